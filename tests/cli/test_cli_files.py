"""The command line: exit codes, output files, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.torch import load_file

from voicebank import __version__
from voicebank.cli import main

from audio_fixtures import GOLDEN_INPUTS
from golden_cases import EXPECTED

CLIPS = sorted(GOLDEN_INPUTS.iterdir())


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("VOICEBANK_NO_PROGRESS", "1")
    monkeypatch.delenv("VOICEBANK_WEIGHTS", raising=False)


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"voicebank {__version__}"
    for cmd in ([], ["embed"], ["extract"], ["inspect-voice"]):
        code, out, _ = run(capsys, *cmd, "--help")
        assert code == 0 and "Usage" in out


def test_embed_jsonl_in_input_order(capsys, golden_weights_dir):
    code, out, err = run(capsys, "embed", *CLIPS, "--weights", golden_weights_dir, "--jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in CLIPS]
    for path, row in zip(CLIPS, rows, strict=True):
        emb = np.array(row["embedding"], dtype=np.float32)
        assert emb.shape == (256,) and abs(np.linalg.norm(emb) - 1) < 1e-5
        expected = load_file(str(EXPECTED / f"{path.name.rsplit('.', 1)[0]}.tts.safetensors"))["t3.speaker_emb"]
        assert float(emb @ expected.numpy().ravel()) > 0.99999


def test_embed_npy_output(capsys, tmp_path, golden_weights_dir):
    out_path = tmp_path / "emb.npy"
    code, _, err = run(capsys, "embed", CLIPS[0], CLIPS[1], "--ve-weights", golden_weights_dir / "ve.safetensors",
                       "-o", out_path)
    assert code == 0, err
    arr = np.load(out_path)
    assert arr.shape == (2, 256) and arr.dtype == np.float32


def test_embed_error_is_one_line_and_writes_nothing(capsys, tmp_path, golden_weights_dir):
    bad = tmp_path / "silence.wav"
    import soundfile as sf

    sf.write(bad, np.zeros(24000, dtype=np.float32), 24000)
    out_path = tmp_path / "emb.npy"
    code, _out, err = run(capsys, "embed", CLIPS[0], bad, "--weights", golden_weights_dir, "-o", out_path)
    assert code == 1
    assert err.count("\n") == 1 and "silence.wav" in err and err.startswith("voicebank: error:")
    assert not out_path.exists() and list(tmp_path.iterdir()) == [bad]


def test_embed_without_weights_says_where_it_looked(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "nothing"))
    code, _, err = run(capsys, "embed", CLIPS[0])
    assert code == 1 and "no Chatterbox weights" in err and "--weights" in err


def test_usage_errors_exit_non_zero(capsys, tmp_path, golden_weights_dir):
    code, _, err = run(capsys, "embed", CLIPS[0], "--weights", golden_weights_dir, "-o", tmp_path / "x.txt")
    assert code == 2 and ".npy" in err
    code, _, _ = run(capsys, "embed", CLIPS[0], "--weights", golden_weights_dir, "--ve-weights",
                     golden_weights_dir / "ve.safetensors")
    assert code == 2


def test_entry_point_script_runs(tmp_path):
    import sys
    from pathlib import Path

    exe = shutil.which("voicebank", path=str(Path(sys.executable).parent)) or shutil.which("voicebank")
    if exe is None:
        pytest.skip("voicebank is not installed as a script in this environment")
    import subprocess

    res = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and __version__ in res.stdout


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_extract_and_inspect(capsys, tmp_path, golden_weights_dir, suffix):
    out_path = tmp_path / f"voice{suffix}"
    code, _, err = run(capsys, "extract", GOLDEN_INPUTS / "short_3s_22k.wav", "-o", out_path, "--weights",
                       golden_weights_dir, "--exaggeration", "0.7")
    assert code == 0, err
    expected = load_file(str(EXPECTED / "short_3s_22k.tts.safetensors"))
    from voicebank.voice.voice import Voice

    got = Voice.load(out_path).tensors()
    assert sorted(got) == sorted(expected)
    assert float(got["t3.emotion_adv"]) == pytest.approx(0.7)
    code, out, _ = run(capsys, "inspect-voice", out_path)
    assert code == 0 and "gen.prompt_feat" in out and "(1, 150, 80)" in out
    code, out, _ = run(capsys, "inspect-voice", out_path, "--json")
    info = json.loads(out)
    assert info["tensors"]["t3.speaker_emb"]["shape"] == [1, 256]


def test_extract_vc_variant(capsys, tmp_path, golden_weights_dir):
    out_path = tmp_path / "vc.safetensors"
    code, _, err = run(capsys, "extract", GOLDEN_INPUTS / "short_3s_22k.wav", "-o", out_path, "--weights",
                       golden_weights_dir, "--variant", "vc")
    assert code == 0, err
    code, out, _ = run(capsys, "inspect-voice", out_path)
    assert "t3." not in out and "variant: vc" in out


def test_extract_refusals_leave_no_file(capsys, tmp_path, golden_weights_dir):
    out_path = tmp_path / "voice.safetensors"
    # Turbo needs more than 5 s
    code, _, err = run(capsys, "extract", GOLDEN_INPUTS / "p240_24k.mp3", "-o", out_path, "--weights",
                       golden_weights_dir, "--variant", "turbo")
    assert code == 1 and "Turbo" in err and err.count("\n") == 1
    # unknown variant, bad suffix, bad device, missing file
    assert run(capsys, "extract", GOLDEN_INPUTS / "p240_24k.mp3", "-o", out_path, "--variant", "klingon")[0] == 2
    assert run(capsys, "extract", GOLDEN_INPUTS / "p240_24k.mp3", "-o", tmp_path / "v.npy")[0] == 2
    import torch

    expected = 0 if torch.cuda.is_available() else 2  # a device this machine lacks is a usage error
    assert run(capsys, "extract", GOLDEN_INPUTS / "p240_24k.mp3", "-o", out_path, "--device", "cuda:0",
               "--weights", golden_weights_dir)[0] == expected
    out_path.unlink(missing_ok=True)
    code, _, err = run(capsys, "extract", tmp_path / "none.wav", "-o", out_path, "--weights", golden_weights_dir)
    assert code == 1 and "no such file" in err
    assert list(tmp_path.iterdir()) == []


def test_inspect_refuses_bad_files(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    code, _, err = run(capsys, "inspect-voice", bad)
    assert code == 1 and "bad.pt" in err
