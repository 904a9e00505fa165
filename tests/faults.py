"""Helpers for the fault tests: a small library built without models, snapshots that prove nothing was lost or
left behind, the CLI run in-process, and real small / read-only file systems (tmpfs, root only)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voicebank.audio import Waveform
from voicebank.library import Library

from audio_fixtures import DATA, speechlike

VOICE_FILE = DATA / "golden" / "expected" / "short_3s_22k.tts.safetensors"
OTHER_VOICE_FILE = DATA / "golden" / "expected" / "long_22s.tts.safetensors"


class FakeEngine:
    """Vectors from the clip's hash: enough for audio and embedding modes (no model, no weights).  ``calls``
    records what was computed, so tests can check that nothing was."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def weights_fingerprint(self, variant: str = "english") -> str:
        return "fake-" + variant

    def embeddings(self, source, variant: str = "english"):
        self.calls.append(f"embeddings:{variant}")
        rng = np.random.default_rng(int(source.sha256[:8], 16))
        s, x = rng.standard_normal(256).astype(np.float32), rng.standard_normal(192).astype(np.float32)
        return s / np.linalg.norm(s), x

    def embed(self, sources, *, variant: str = "english"):
        """(len(sources), 256) unit vectors from each source's bytes (the built-in cohort)."""
        self.calls.append(f"embed:{variant}:{len(sources)}")
        out = []
        for src in sources:
            rng = np.random.default_rng(int(hashlib.sha256(bytes(src)).hexdigest()[:8], 16))
            s = rng.standard_normal(256).astype(np.float32)
            out.append(s / np.linalg.norm(s))
        return np.stack(out)

    def extract(self, source, variant: str = "english", *, exaggeration: float = 0.5):
        raise AssertionError("the fake engine extracts nothing")


def clip(seed: int, seconds: float = 2.0) -> Waveform:
    return Waveform(speechlike(seconds, 16000, seed=seed), 16000)


def build_library(root: Path | str, *, blobs: str | None = None) -> Library:
    """'alice' and 'bob' (audio mode: a kept WAV each) and 'carol' (an imported voice file); ``root`` a directory,
    or a shared library's ``postgresql://`` URL with its ``blobs``."""
    lib = Library(root, engine=FakeEngine(), blobs=blobs)
    lib.add(clip(1), name="alice")
    lib.add(clip(2), name="bob")
    lib.import_file(VOICE_FILE, "carol")
    lib.close()
    return lib


def tree(root: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``root`` (directories as ``<dir>``)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            out[rel] = "<dir>"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def blobs(root: Path) -> dict[str, str]:
    return {k: v for k, v in tree(root).items() if k.startswith("blobs/") and v != "<dir>"}


def assert_nothing_lost(root: Path, before: dict[str, str]) -> None:
    """Every content file that was there is there, intact; no new content or temp file appeared."""
    after = blobs(root)
    assert after == before, f"blobs changed: lost {set(before) - set(after)}, new {set(after) - set(before)}"
    tmp = root / "tmp"
    leftovers = [p.name for p in tmp.iterdir()] if tmp.is_dir() else []
    assert not leftovers, f"temp files left behind: {leftovers}"


def run_cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    """``voicebank ARGS`` in this process: ``(exit code, stdout, stderr)``; fails on a traceback."""
    from voicebank.cli import app, main, register

    register(app)
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str, code: int = 1) -> str:
    """A refusal: exit ``code`` (1: an error; 2: a usage error), and a ``voicebank: error:`` line of at most 520
    characters (click's own usage message when click refused the command line)."""
    assert rc == code, (rc, err)
    if "voicebank: error:" in err:
        lines = [ln for ln in err.splitlines() if ln.startswith("voicebank: error:")]
        assert len(lines) >= 1, err
        for ln in lines:
            assert len(ln) <= 520, len(ln)
            assert "\x1b" not in ln
        text = lines[-1]
    else:
        text = err
    for n in needles:
        assert n.lower() in " ".join(text.split()).lower(), (n, err)
    return text


def can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    probe = Path("/tmp") / f"voicebank-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe)], check=False)
        return ok
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


needs_mount = pytest.mark.skipif(not can_mount(), reason="mounting a tmpfs needs root and a permissive sandbox")


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where`` (created), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the file system of ``directory`` to the last byte, then free ``leave`` bytes."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for block in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * block):
                    pass
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
