"""Generated bad input at the command line: numeric options, output paths, untrusted text and names.

Each case: exit 1 or 2 with one line (or click's usage message), no traceback, no file left behind, and the
library (when there is one) unchanged and still checking clean.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebank import errors
from voicebank.library import Library

from audio_fixtures import GOLDEN_INPUTS, speechlike
from faults import (
    OTHER_VOICE_FILE,
    FakeEngine,
    assert_nothing_lost,
    assert_one_line_error,
    blobs,
    build_library,
    needs_mount,
    run_cli,
    tmpfs,
)

CLIP = GOLDEN_INPUTS / "short_3s_22k.wav"
CONTROL = ["\x1b]0;pwned\x07", "\x1b[2J", "\u202e", "\x9b31m", "\x00", "\x08\x08"]


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.delenv("VOICEBANK_LIBRARY", raising=False)
    monkeypatch.delenv("VOICEBANK_WEIGHTS", raising=False)


@pytest.fixture
def root(tmp_path) -> Path:
    path = tmp_path / "lib"
    build_library(path)
    return path


def assert_no_control(text: str) -> None:
    bad = [c for c in text if c not in "\n" and (unicodedata.category(c)[0] == "C")]
    assert not bad, f"raw control characters printed: {bad!r}"


# --- numeric options: one check for the CLI and the API ------------------------------------------------------

BAD_EXAGGERATION = ["nan", "inf", "-inf", "NaN", "1e308", "-0.5", "2.01", "abc", ""]


@pytest.mark.parametrize("value", BAD_EXAGGERATION)
@pytest.mark.parametrize("command", ["extract", "add", "export"])
def test_bad_exaggeration_is_refused_before_any_work(tmp_path, capsys, command, value):
    lib = tmp_path / "lib"
    out = tmp_path / "out" / "v.safetensors"
    args = {"extract": ["extract", CLIP, "-o", out],
            "add": ["add", CLIP, "--library", lib],
            "export": ["export", "alice", "-o", out, "--library", lib]}[command]
    rc, _stdout, err = run_cli(capsys, [*args, "--exaggeration", value, "--weights", tmp_path / "no-weights"])
    assert rc == 2 and "exaggeration" in err.lower(), err
    assert not out.parent.exists() and not lib.exists()  # refused before the library or the output was touched


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 2.5, "x"])
def test_the_api_uses_the_same_check(tmp_path, value):
    with Library(tmp_path / "lib", engine=FakeEngine()) as lib:
        for call in (lambda: lib.add(CLIP, exaggeration=value), lambda: lib.options(exaggeration=value),
                     lambda: lib.update("x", exaggeration=value)):
            with pytest.raises(errors.InvalidOptionError):
                call()
        assert lib.names() == []
    with pytest.raises(errors.InvalidOptionError):
        Library(tmp_path / "lib2", engine=FakeEngine(), duplicate_threshold=float("nan"))
    with Library(tmp_path / "lib3", engine=FakeEngine()) as lib, pytest.raises(errors.InvalidOptionError):
        lib.add_many([CLIP], workers=value if value != "x" else 0)


BAD_NUMBERS = ["nan", "inf", "-inf", "1e308", "-1", "99999999999"]
SERVE_OPTIONS = ["--workers", "--queue", "--cache-mb", "--max-upload-mb", "--max-audio-seconds", "--body-timeout",
                 "--graceful-timeout"]
BATCH_OPTIONS = ["--workers", "--batch-size", "--threads", "--rows-per-file", "--model-batch",
                 "--exaggeration", "--gpus-per-worker"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("option", SERVE_OPTIONS)
def test_serve_refuses_every_bad_number_before_starting(tmp_path, capsys, option, value):
    rc, _out, err = run_cli(capsys, ["serve", option, value, "--port", "1", "--library", tmp_path / "lib",
                                     "--weights", tmp_path / "nw"])
    assert rc == 2 and option in err and "unexpected" not in err, err  # a usage error, whoever checks it
    assert not (tmp_path / "lib").exists()  # nothing created, no port bound (port 1 would need privileges)


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("option", BATCH_OPTIONS)
def test_batch_refuses_every_bad_number_before_any_work(tmp_path, capsys, option, value):
    out = tmp_path / "ds"
    rc, _out, err = run_cli(capsys, ["batch", CLIP, "-o", out, option, value, "--weights", tmp_path / "nw"])
    assert rc == 2 and "unexpected" not in err, err
    assert option.lstrip("-").replace("-", "_") in err.replace("-", "_"), err
    assert not out.exists()


def test_the_batch_api_uses_the_same_check(tmp_path, golden_weights_dir):
    from voicebank.batch import TransformConfig, execute, plan

    for bad in ({"exaggeration": float("nan")}, {"model_batch": 10**6}, {"threads": 0}, {"threads": 2.5}):
        with pytest.raises(errors.InvalidOptionError):
            TransformConfig(**bad)
    job = plan([CLIP], tmp_path / "ds", TransformConfig(weights=str(golden_weights_dir)))
    for bad in ({"workers": 0}, {"batch_size": float("inf")}, {"gpus_per_worker": float("nan")},
                {"rows_per_file": -1}, {"threads_per_worker": 10**6}):
        with pytest.raises(errors.InvalidOptionError):
            execute(job, **bad)
    assert not any((tmp_path / "ds").glob("*.parquet"))


@pytest.mark.parametrize("args", [["add", CLIP, "-j", "0"], ["add", CLIP, "--variant", "../../x"],
                                  ["extract", CLIP, "-o", "v.safetensors", "--variant", "klingon"],
                                  ["export", "alice", "-o", "v.safetensors", "--variant", "\x1b[2J"]])
def test_other_bad_options_are_usage_errors(tmp_path, capsys, root, args):
    before = blobs(root)
    rc, _out, err = run_cli(capsys, [*args, "--library", root] if args[0] != "extract" else args)
    assert rc == 2 and "\x1b" not in err
    assert_nothing_lost(root, before)


# --- output paths -------------------------------------------------------------------------------------------


def output_cases(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a-dir.safetensors").mkdir()
    (tmp_path / "a-file").write_bytes(b"x")
    return {"a-directory": tmp_path / "a-dir.safetensors", "under-a-file": tmp_path / "a-file" / "v.safetensors",
            "deep-under-a-file": tmp_path / "a-file" / "x" / "y" / "v.safetensors"}


@pytest.mark.parametrize("case", ["a-directory", "under-a-file", "deep-under-a-file"])
@pytest.mark.parametrize("command", ["extract", "embed", "export-safetensors", "export-npy", "export-wav"])
def test_bad_output_paths_are_refused_with_what_is_wrong(tmp_path, capsys, root, command, case):
    out = output_cases(tmp_path)[case]
    suffix = {"embed": ".npy", "export-npy": ".npy", "export-wav": ".wav"}.get(command, ".safetensors")
    if case == "a-directory" and suffix != ".safetensors":
        out = out.rename(out.with_suffix(suffix))
    else:
        out = out.with_suffix(suffix)
    before_tree = sorted(p.name for p in tmp_path.rglob("*"))
    before = blobs(root)
    args = {"extract": ["extract", CLIP, "-o", out, "--weights", tmp_path / "nw"],
            "embed": ["embed", CLIP, "-o", out, "--weights", tmp_path / "nw"]}.get(
        command, ["export", "alice", "-o", out, "--library", root])
    rc, _stdout, err = run_cli(capsys, args)
    text = assert_one_line_error(rc, err)
    assert ("directory" in text or "is a file" in text), text
    assert sorted(p.name for p in tmp_path.rglob("*")) == before_tree
    assert_nothing_lost(root, before)


@needs_mount
@pytest.mark.parametrize("command", ["extract", "embed", "export"])
def test_an_unwritable_output_directory_is_refused(tmp_path, capsys, root, command):
    with tmpfs(tmp_path / "mnt", "64k") as mnt:
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        out = mnt / "sub" / ("v.npy" if command == "embed" else "v.safetensors")
        args = {"extract": ["extract", CLIP, "-o", out, "--weights", tmp_path / "nw"],
                "embed": ["embed", CLIP, "-o", out, "--weights", tmp_path / "nw"],
                "export": ["export", "carol", "-o", out, "--library", root]}[command]
        rc, _stdout, err = run_cli(capsys, [*args, "--parents"])  # the missing "sub" is not the error here
        assert_one_line_error(rc, err, "read-only")
        assert list(mnt.iterdir()) == []


# --- untrusted text never reaches the terminal raw ------------------------------------------------------------


@pytest.mark.parametrize("evil", CONTROL)
def test_file_names_and_metadata_are_escaped(tmp_path, capsys, root, evil):
    # a voice file whose name carries control characters, imported under a clean name
    path = tmp_path / f"v{evil.replace(chr(0), '')}x.safetensors"
    shutil.copy(OTHER_VOICE_FILE, path)
    rc, out, err = run_cli(capsys, ["import", path, "--name", "dora", "--library", root])
    assert rc == 0, err
    assert_no_control(out + err)
    for args in (["show", "dora"], ["list"], ["show", "dora", "--json"], ["list", "--json"],
                 ["library", "check"], ["inspect-voice", path]):
        rc, out, err = run_cli(capsys, [*args, "--library", root] if args[0] != "inspect-voice" else args)
        assert rc == 0, err
        assert_no_control(out + err)
    # and as a clip name (refused or not, nothing raw is printed)
    clip = tmp_path / f"c{evil.replace(chr(0), '')}.wav"
    sf.write(clip, speechlike(2.0, 16000, seed=1), 16000)
    rc, out, err = run_cli(capsys, ["add", clip, "--library", root, "--weights", tmp_path / "nw"])
    assert_no_control(out + err)
    rc, out, err = run_cli(capsys, ["inspect-audio", clip])
    assert_no_control(out + err)


@pytest.mark.parametrize("evil", CONTROL)
def test_names_with_control_characters_are_refused_and_not_echoed(tmp_path, capsys, root, evil):
    for args in (["show", f"a{evil}b"], ["rename", "alice", f"a{evil}b"], ["rm", f"x{evil}"]):
        rc, out, err = run_cli(capsys, [*args, "--library", root])
        assert rc == 1
        assert_no_control(out + err)
    with Library(root, engine=FakeEngine()) as lib:
        assert lib.names() == ["alice", "bob", "carol"] and lib.check().ok


def test_every_error_line_is_capped(tmp_path, capsys, root):
    import torch
    from safetensors.torch import save_file

    many = {f"t3.x{'y' * 50}{i}": torch.zeros(1) for i in range(3000)}
    path = tmp_path / "huge.safetensors"
    save_file(many, str(path))
    rc, _out, err = run_cli(capsys, ["import", path, "--library", root])
    text = assert_one_line_error(rc, err)
    assert len(text) <= 520 and "more" in text


# --- names: what is reported is what is stored ---------------------------------------------------------------


def test_nfc_and_nfd_are_one_name(tmp_path):
    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
    assert nfd != nfc
    with Library(tmp_path / "lib", engine=FakeEngine()) as lib:
        from faults import clip

        assert lib.add(clip(1), name=nfd).voice.name == nfc
        assert nfd in lib and nfc in lib and lib.show(nfd).name == nfc
        with pytest.raises(errors.VoiceExistsError):
            lib.add(clip(2), name=nfc)
        lib.rename(nfd, "cafe2")
        assert lib.names() == ["cafe2"]


@pytest.mark.parametrize("lookalike", ["аlice", "alicе", "ΑLICE".lower().replace("α", "а"), "ａｌｉｃｅ"])
def test_lookalike_names_are_refused(tmp_path, lookalike):
    from faults import clip

    with Library(tmp_path / "lib", engine=FakeEngine()) as lib:
        lib.add(clip(1), name="alice")
        lib.add(clip(2), name="bob")
        assert lookalike != "alice"
        with pytest.raises(errors.VoiceExistsError, match="looks the same"):
            lib.add(clip(3), name=lookalike)
        with pytest.raises(errors.VoiceExistsError, match="looks the same"):
            lib.rename("bob", lookalike)
        assert lib.names() == ["alice", "bob"] and lib.check().ok


@pytest.fixture(scope="module")
def engine_weights(golden_weights_dir):
    return golden_weights_dir


@pytest.mark.parametrize("stem", ["my voice", "café", unicodedata.normalize("NFD", "Zoë  two"), "日本語 声",
                                  "a.b.c", "O'Brien"])
def test_a_clip_is_added_under_the_name_reported(tmp_path, capsys, engine_weights, stem):
    clip = tmp_path / f"{stem}.wav"
    sf.write(clip, speechlike(3.0, 16000, seed=len(stem)), 16000)
    lib = tmp_path / "lib"
    rc, out, err = run_cli(capsys, ["add", clip, "--mode", "embedding", "--json", "--force", "--library", lib,
                                    "--weights", engine_weights])
    assert rc == 0, err
    name = json.loads(out)[0]["name"]
    assert name == unicodedata.normalize("NFC", stem)
    rc, out, err = run_cli(capsys, ["show", name, "--library", lib])
    assert rc == 0 and out.startswith(name)
    rc, out, err = run_cli(capsys, ["show", stem, "--library", lib])  # as typed, whichever form
    assert rc == 0
    rc, out, err = run_cli(capsys, ["list", "--library", lib])
    assert name in out
    np.testing.assert_equal(Library(lib).names(), [name])


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=2000))
def test_error_lines_are_one_escaped_capped_line(text):
    import io
    from contextlib import redirect_stderr

    from voicebank.cli.common import MAX_MESSAGE_CHARS, clean, error_line

    buf = io.StringIO()
    with redirect_stderr(buf):
        error_line(text)
    line = buf.getvalue()
    assert line.count("\n") == 1 and line.endswith("\n")
    body = line[:-1]
    assert len(body) <= len("voicebank: error: ") + MAX_MESSAGE_CHARS
    assert_no_control(body)
    assert_no_control(clean(text))


@needs_mount
@pytest.mark.parametrize("leave", [0, 20_000])
@pytest.mark.parametrize("command", ["extract-safetensors", "extract-pt", "embed"])
def test_a_full_disk_fails_extract_and_embed_cleanly(tmp_path, capsys, engine_weights, command, leave):
    from faults import fill

    with tmpfs(tmp_path / "mnt", "256k") as mnt:
        fill(mnt, leave)
        suffix = {"extract-safetensors": ".safetensors", "extract-pt": ".pt", "embed": ".npy"}[command]
        out = mnt / "sub" / f"v{suffix}"
        verb = "embed" if command == "embed" else "extract"
        rc, _stdout, err = run_cli(capsys, [verb, CLIP, "-o", out, "--weights", engine_weights, "--parents"])
        if leave and rc == 0:  # it fitted: then it is whole
            assert out.stat().st_size > 0
            return
        assert_one_line_error(rc, err, "full")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]
