"""Voice files both ways: voicebank .safetensors and upstream .pt; every malformed file is refused."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from voicebank.engine import Extractor
from voicebank.errors import UnsafeVoiceFileError, VoiceFileError
from voicebank.voice import FORMAT_VERSION, Voice

from golden_cases import EXPECTED, INPUTS

GOLDEN_PT = sorted(EXPECTED.glob("*.pt"))


@pytest.fixture(scope="module")
def voice(golden_weights_dir) -> Voice:
    return Extractor.from_local(golden_weights_dir).extract(INPUTS / "odd_7p33s_48k.ogg", exaggeration=0.6)


@pytest.fixture(scope="module")
def vc_voice(golden_weights_dir) -> Voice:
    return Extractor.from_local(golden_weights_dir, variant="vc").extract(INPUTS / "short_3s_22k.wav")


def _same(a: Voice, b: Voice) -> None:
    ta, tb = a.tensors(), b.tensors()
    assert list(ta) == list(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip(voice, vc_voice, tmp_path, suffix):
    for v in (voice, vc_voice):
        path = v.save(tmp_path / f"{v.variant}{suffix}")
        back = Voice.load(path)
        _same(v, back)
        assert back.variant == v.variant
    assert sorted(os.listdir(tmp_path)) == sorted(f"{v}{suffix}" for v in ("english", "vc"))


def test_safetensors_metadata(voice, tmp_path):
    path = voice.save(tmp_path / "v.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        names = sorted(f.keys())
    assert names == sorted(["t3.speaker_emb", "t3.cond_prompt_speech_tokens", "t3.emotion_adv", "gen.prompt_token",
                            "gen.prompt_token_len", "gen.prompt_feat", "gen.embedding"])
    assert meta["format_version"] == str(FORMAT_VERSION) and meta["variant"] == "english"
    assert float(meta["exaggeration"]) == 0.6 and len(meta["weights_fingerprint"]) == 16
    assert len(meta["source_sha256"]) == 64 and meta["source_sample_rate"] == "48000"
    assert abs(float(meta["source_duration"]) - 7.33) < 0.01 and meta["voicebank_version"]
    back = Voice.load(path)
    assert back.metadata.exaggeration == 0.6 and back.metadata.source_sha256 == meta["source_sha256"]


def test_pt_has_exactly_upstreams_structure(voice, vc_voice, tmp_path):
    obj = torch.load(voice.save(tmp_path / "v.pt"), weights_only=True)
    reference = torch.load(EXPECTED / "mid_12s.tts.pt", weights_only=True)
    assert list(obj) == list(reference) == ["t3", "gen"]
    assert list(obj["t3"]) == list(reference["t3"]) and list(obj["gen"]) == list(reference["gen"])
    assert obj["t3"]["clap_emb"] is None and obj["gen"]["prompt_feat_len"] is None
    vc = torch.load(vc_voice.save(tmp_path / "vc.pt"), weights_only=True)
    assert list(vc) == list(torch.load(EXPECTED / "mid_12s.vc.pt", weights_only=True))


@pytest.mark.parametrize("path", GOLDEN_PT, ids=lambda p: p.name)
def test_reads_every_upstream_pt(path):
    voice = Voice.load(path)
    expected = load_file(str(path.with_suffix(".safetensors")))
    got = voice.tensors()
    assert sorted(got) == sorted(expected)
    for k, t in expected.items():
        assert torch.equal(got[k], t), k
    assert voice.variant == ("vc" if ".vc." in path.name else "turbo" if ".turbo." in path.name else "english")


def test_builtin_conds_pt_layout(tmp_path):
    # A checkpoint's builtin voice is a Conditionals.save file named conds.pt
    conds = tmp_path / "conds.pt"
    conds.write_bytes((EXPECTED / "mid_12s.tts.pt").read_bytes())
    assert Voice.load(conds).t3 is not None


def test_device_moves(voice):
    moved = voice.to("cpu")
    _same(voice, moved)
    meta = voice.to("meta")
    assert all(t.device.type == "meta" for t in meta.tensors().values())


def test_with_exaggeration(voice):
    v = voice.with_exaggeration(1.25)
    assert v.t3 is not None and v.t3.emotion_adv is not None
    assert v.t3.emotion_adv.shape == (1, 1, 1) and float(v.t3.emotion_adv) == 1.25
    assert v.metadata.exaggeration == 1.25


# --- refusals ---------------------------------------------------------------------------------------


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/voicebank-pwned",))


def test_pickle_that_runs_code_is_refused_not_run(tmp_path):
    marker = "/tmp/voicebank-pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    p = tmp_path / "evil.pt"
    torch.save({"t3": {"speaker_emb": _Exploit()}, "gen": {}}, p)
    with pytest.raises(UnsafeVoiceFileError, match="refused"):
        Voice.load(p)
    assert not os.path.exists(marker)
    raw = tmp_path / "evil_raw.pt"
    with open(raw, "wb") as f:
        pickle.dump(_Exploit(), f)
    with pytest.raises(VoiceFileError):
        Voice.load(raw)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file(voice, tmp_path, suffix):
    path = voice.save(tmp_path / f"v{suffix}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(VoiceFileError):
        Voice.load(path)


def _tamper(voice: Voice, tmp_path, change) -> Voice:
    tensors = {k: v.clone() for k, v in voice.tensors().items()}
    change(tensors)
    p = tmp_path / "bad.safetensors"
    save_file(tensors, str(p))
    return Voice.load(p)


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.update({"t3.speaker_emb": torch.zeros(1, 255)}), "shape"),
    (lambda t: t.update({"gen.prompt_feat": torch.zeros(1, 10, 81)}), "shape"),
    (lambda t: t.update({"gen.embedding": torch.zeros(1, 192, dtype=torch.float64)}), "dtype"),
    (lambda t: t.update({"gen.prompt_token": t["gen.prompt_token"].int()}), "dtype"),
    (lambda t: t.update({"gen.extra": torch.zeros(1)}), "unexpected"),
    (lambda t: t.pop("gen.embedding"), "missing"),
    (lambda t: t.update({"gen.prompt_token_len": torch.tensor([3])}), "prompt_token_len"),
    (lambda t: t.update({"gen.prompt_token": t["gen.prompt_token"] + 7000}), "outside"),
    (lambda t: t.update({"t3.speaker_emb": torch.full((1, 256), float("nan"))}), "NaN"),
])
def test_malformed_safetensors_is_refused(voice, tmp_path, change, message):
    with pytest.raises(VoiceFileError, match=message):
        _tamper(voice, tmp_path, change)


def test_malformed_pt_is_refused(tmp_path):
    good = torch.load(EXPECTED / "mid_12s.tts.pt", weights_only=True)
    cases = [
        ({"t3": good["t3"], "gen": good["gen"], "extra": 1}, "expected"),
        ({"t3": {**good["t3"], "speaker_emb": torch.zeros(256)}, "gen": good["gen"]}, "shape"),
        ({"t3": good["t3"], "gen": {**good["gen"], "surprise": torch.zeros(1)}}, "unexpected"),
        ([1, 2, 3], "not Chatterbox"),
    ]
    for obj, message in cases:
        p = tmp_path / "bad.pt"
        torch.save(obj, p)
        with pytest.raises(VoiceFileError, match=message):
            Voice.load(p)


def test_not_a_zip_and_wrong_extension(voice, tmp_path):
    p = tmp_path / "x.pt"
    p.write_bytes(b"not a torch file at all")
    with pytest.raises(VoiceFileError):
        Voice.load(p)
    with pytest.raises(VoiceFileError, match=r"\.json"):
        voice.save(tmp_path / "x.json")
    with pytest.raises(VoiceFileError, match="no such"):
        Voice.load(tmp_path / "missing.safetensors")
    assert not zipfile.is_zipfile(p)


def test_newer_format_version_is_refused(voice, tmp_path):
    from safetensors.torch import save_file as save

    meta = voice.metadata.to_strings()
    meta["format_version"] = str(FORMAT_VERSION + 1)
    p = tmp_path / "future.safetensors"
    save({k: v.contiguous() for k, v in voice.tensors().items()}, str(p), metadata=meta)
    with pytest.raises(VoiceFileError, match="upgrade"):
        Voice.load(p)


def test_failed_save_leaves_nothing(voice, tmp_path, monkeypatch):
    import voicebank.voice.files as c

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(c.torch, "save", boom)
    with pytest.raises(OSError):
        voice.save(tmp_path / "v.pt")
    assert list(tmp_path.iterdir()) == []


def test_safetensors_bytes_are_reproducible(voice, tmp_path):
    assert len({voice.to_bytes() for _ in range(10)}) == 1
    a = voice.save(tmp_path / "a.safetensors").read_bytes()
    b = voice.save(tmp_path / "b.safetensors").read_bytes()
    assert a == b == voice.to_bytes()
