"""A user's output path whose directory does not exist is refused, as ``cp`` refuses it (issue 20, item 4): a
typo must not create a new directory tree.  ``--parents`` (CLI) or ``mkdir=True`` (API) opts in."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from voicebank import errors
from voicebank.fileio import atomic_write, check_output_path
from voicebank.library import Library

from audio_fixtures import GOLDEN_INPUTS
from faults import OTHER_VOICE_FILE, FakeEngine, assert_one_line_error, build_library, run_cli

CLIP = GOLDEN_INPUTS / "short_3s_22k.wav"


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.delenv("VOICEBANK_LIBRARY", raising=False)
    monkeypatch.delenv("VOICEBANK_WEIGHTS", raising=False)


def names(tmp_path: Path) -> list[str]:
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))


def test_check_output_path_refuses_a_missing_directory(tmp_path):
    with pytest.raises(errors.OutputPathError, match=r"typo.*does not exist.*mkdir=True"):
        check_output_path(tmp_path / "typo" / "v.safetensors")
    with pytest.raises(errors.OutputPathError, match="--parents"):
        check_output_path(tmp_path / "typo" / "deeper" / "v.npy", "--output", opt_in="--parents")
    assert check_output_path(tmp_path / "typo" / "v.npy", mkdir=True) == tmp_path / "typo" / "v.npy"
    assert check_output_path(tmp_path / "v.npy") == tmp_path / "v.npy"
    assert names(tmp_path) == []


def test_atomic_write_creates_directories_only_when_asked(tmp_path):
    with pytest.raises(errors.OutputPathError, match="does not exist"):
        atomic_write(tmp_path / "typo" / "f.bin", lambda f: f.write(b"x"), mkdir=False)
    assert names(tmp_path) == []
    atomic_write(tmp_path / "a" / "b" / "f.bin", lambda f: f.write(b"x"))  # the package's own files: as before
    assert (tmp_path / "a" / "b" / "f.bin").read_bytes() == b"x"


def test_voice_save_refuses_a_missing_directory(tmp_path):
    from voicebank.voice import Voice

    voice = Voice.load(OTHER_VOICE_FILE)
    for suffix in (".safetensors", ".pt"):
        with pytest.raises(errors.OutputPathError, match="does not exist"):
            voice.save(tmp_path / "typo" / f"v{suffix}")
    assert names(tmp_path) == []
    assert voice.save(tmp_path / "new" / "v.safetensors", mkdir=True).is_file()


def test_library_export_refuses_a_missing_directory(tmp_path):
    build_library(tmp_path / "lib")
    with Library(tmp_path / "lib", engine=FakeEngine()) as lib:
        for suffix in (".safetensors", ".wav", ".npy"):
            with pytest.raises(errors.OutputPathError, match="does not exist"):
                lib.export("alice" if suffix != ".safetensors" else "carol", tmp_path / "typo" / f"v{suffix}")
        assert not (tmp_path / "typo").exists()
        assert lib.export("alice", tmp_path / "new" / "v.npy", mkdir=True).is_file()


def test_client_download_refuses_a_missing_directory_before_downloading(tmp_path):
    from voicebank.client import Client

    body = OTHER_VOICE_FILE.read_bytes()
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, content=body, headers={"ETag": '"x"'})

    with Client("http://voices.test", cache_dir=False, transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(errors.OutputPathError, match="does not exist"):
            client.download("carol", tmp_path / "typo" / "v.safetensors")
        assert calls == [] and not (tmp_path / "typo").exists()
        assert client.download("carol", tmp_path / "new" / "v.safetensors", mkdir=True).read_bytes() == body


@pytest.mark.parametrize("command", ["extract", "embed", "export", "pull", "batch"])
def test_cli_outputs_refuse_a_missing_directory(tmp_path, capsys, command):
    lib = tmp_path / "lib"
    if command == "export":
        build_library(lib)
    out = tmp_path / "typo" / {"embed": "v.npy", "batch": "dataset"}.get(command, "v.safetensors")
    args = {"extract": ["extract", CLIP, "-o", out, "--weights", tmp_path / "nw"],
            "embed": ["embed", CLIP, "-o", out, "--weights", tmp_path / "nw"],
            "export": ["export", "carol", "-o", out, "--library", lib],
            "pull": ["pull", "carol", "--server", "http://127.0.0.1:9", "-o", out],
            "batch": ["batch", CLIP, "-o", out, "--weights", tmp_path / "nw"]}[command]
    before = names(tmp_path)
    rc, _out, err = run_cli(capsys, args)
    text = assert_one_line_error(rc, err, "does not exist", "--parents")
    assert str(tmp_path / "typo") in text
    assert names(tmp_path) == before


def test_cli_parents_creates_the_directories(tmp_path, capsys):
    build_library(tmp_path / "lib")
    out = tmp_path / "new" / "deeper" / "v.npy"
    rc, _out, err = run_cli(capsys, ["export", "alice", "-o", out, "--library", tmp_path / "lib", "--parents"])
    assert rc == 0, err
    assert np.load(out).shape == (256,)
