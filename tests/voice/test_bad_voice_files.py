"""Generated bad voice files: each is refused with a typed error and a short, accurate message, never loaded,
imported or written half-way; the format comes from the bytes, not the file name."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from voicebank import errors
from voicebank.chatterbox import MAX_PROMPT_FEAT_FRAMES
from voicebank.library import Library
from voicebank.voice.voice import Voice

from faults import OTHER_VOICE_FILE, VOICE_FILE, FakeEngine, assert_nothing_lost, blobs, build_library

GOOD = Voice.load(VOICE_FILE)


def st_bytes(tensors: dict[str, torch.Tensor], **meta: str) -> bytes:
    base = GOOD.metadata.to_strings()
    base.update(meta)
    return st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=base)


def pt_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def upstream_dict(voice: Voice = GOOD) -> dict:
    assert voice.t3 is not None
    return {"t3": dict(voice.t3.as_dict()), "gen": dict(voice.gen.as_dict())}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path: Path, cls: type[Exception] = errors.VoiceFileError, *needles: str) -> str:
    with pytest.raises(cls) as e:
        Voice.load(path)
    msg = str(e.value)
    assert len(msg) < 400 and "\n" not in msg, msg
    assert "PyTorch" not in msg and "weights_only" not in msg and "enhancement" not in msg, msg
    for n in needles:
        assert n.lower() in msg.lower(), (n, msg)
    return msg


# --- the format comes from the bytes ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".bin", ""])
def test_format_is_read_from_the_bytes(tmp_path, suffix):
    st = write(tmp_path, f"a{suffix}", VOICE_FILE.read_bytes())
    pt = write(tmp_path, f"b{suffix}x", pt_bytes(upstream_dict()))
    for path in (st, pt):
        voice = Voice.load(path)
        assert torch.equal(voice.gen.prompt_feat, GOOD.gen.prompt_feat)
    from voicebank.voice.files import voice_file_format

    assert voice_file_format(st) == "voicebank safetensors" and voice_file_format(pt) == "upstream .pt"


@pytest.mark.parametrize("data", [b"", b"hello", b"{}" * 10, b"\x00" * 64, b"RIFF\x00\x00\x00\x00WAVE"])
def test_neither_format_is_a_voice_file_error(tmp_path, data):
    refused(write(tmp_path, "x.safetensors", data), errors.VoiceFileError)


# --- tensors that are not dense CPU tensors ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sparse", "meta", "sparse-csr"])
@pytest.mark.parametrize("field", ["gen.prompt_token", "gen.prompt_feat", "t3.speaker_emb"])
def test_sparse_and_meta_tensors_are_refused(tmp_path, kind, field):
    d = upstream_dict()
    part, key = field.split(".")
    t = d[part][key]
    if kind == "sparse":
        t = t.to_sparse()
    elif kind == "sparse-csr":
        t = t.reshape(t.shape[0], -1).to_sparse_csr()
    else:
        t = torch.empty(t.shape, dtype=t.dtype, device="meta")
    d[part][key] = t
    msg = refused(write(tmp_path, "v.pt", pt_bytes(d)), errors.VoiceFileError)
    assert not isinstance(msg, errors.UnsafeVoiceFileError)


# --- shapes and lengths upstream never produces ------------------------------------------------------------


def with_gen(frames: int, tokens: int) -> dict[str, torch.Tensor]:
    t = dict(GOOD.tensors())
    t["gen.prompt_feat"] = torch.zeros(1, frames, 80)
    t["gen.prompt_token"] = torch.zeros(1, tokens, dtype=torch.long)
    t["gen.prompt_token_len"] = torch.tensor([tokens])
    return t


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.integers(0, 4000), delta=st.integers(-4, 3))
def test_mel_and_token_lengths_must_fit(tmp_path, frames, delta):
    tokens = max(0, frames // 2 + delta)
    path = write(tmp_path, "v.safetensors", st_bytes(with_gen(frames, tokens)))
    ok = 0 < frames <= MAX_PROMPT_FEAT_FRAMES and tokens > 0 and frames // 2 - 1 <= tokens <= frames // 2
    if ok:
        assert Voice.load(path).gen.prompt_feat.shape[1] == frames
    else:
        refused(path, errors.VoiceFileError)


@pytest.mark.parametrize("frames", [0, 30_001, 200_000])
def test_absurd_mel_lengths_are_refused(tmp_path, frames):
    refused(write(tmp_path, "v.safetensors", st_bytes(with_gen(frames, frames // 2))), errors.VoiceFileError,
            "mel frames")


def test_zero_t3_prompt_tokens_are_refused(tmp_path):
    t = dict(GOOD.tensors())
    t["t3.cond_prompt_speech_tokens"] = torch.zeros(1, 0, dtype=torch.long)
    refused(write(tmp_path, "v.safetensors", st_bytes(t)), errors.VoiceFileError, "empty")


# --- metadata ------------------------------------------------------------------------------------------

BAD_META = {
    "variant": ["../../etc/passwd", "klingon", "", "ENGLISH", "english\x1b[2J"],
    "exaggeration": ["nan", "inf", "-inf", "1e999", "x"],
    "source_duration": ["nan", "inf", "-1", "1e300"],
    "source_sample_rate": ["0", "-16000", "999999999", "16000.5", "nan"],
    "source_sha256": ["../x", "abc", "g" * 64],
    "format_version": ["-1", "0", "1.0", "v1", "", "99"],
    "weights_fingerprint": ["\x1b]0;pwned\x07", "x" * 500],
}


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, vs in BAD_META.items() for v in vs])
def test_bad_metadata_is_refused_on_load_and_import(tmp_path, key, value):
    path = write(tmp_path, "v.safetensors", st_bytes(dict(GOOD.tensors()), **{key: value}))
    msg = refused(path, errors.VoiceFileError)
    if key == "format_version" and value != "99":
        assert "invalid" in msg and "newer" not in msg
    root = tmp_path / "lib"
    build_library(root)
    before = blobs(root)
    with Library(root, engine=FakeEngine()) as lib:
        with pytest.raises(errors.VoiceFileError):
            lib.import_file(path, "mallory")
        assert "mallory" not in lib and lib.check().ok
    assert_nothing_lost(root, before)


def test_vc_label_on_a_voice_with_a_t3_part_is_refused(tmp_path):
    refused(write(tmp_path, "v.safetensors", st_bytes(dict(GOOD.tensors()), variant="vc")), errors.VoiceFileError,
            "vc")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=st.dictionaries(st.sampled_from([*sorted(BAD_META), "hybrid", "voicebank_version"]),
                            st.text(max_size=30), max_size=4))
def test_any_metadata_is_loaded_or_refused_cleanly(tmp_path, meta):
    path = write(tmp_path, "v.safetensors", st_bytes(dict(GOOD.tensors()), **meta))
    try:
        voice = Voice.load(path)
    except errors.VoiceFileError as e:
        assert len(str(e)) < 400
        return
    # what loads is valid everywhere: it saves again, and its metadata has no control characters
    assert voice.to_bytes()
    assert all(str(v).isprintable() for v in voice.metadata.to_strings().values())


# --- pickles: refusals name the call; damage is not malice --------------------------------------------------


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/voicebank-pwned",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1+1",))


@pytest.mark.parametrize(("payload", "call"), [(RunsCode(), "system"), (CallsEval(), "eval")])
def test_a_pickle_that_runs_code_names_the_call(tmp_path, payload, call):
    d = upstream_dict()
    d["gen"]["prompt_feat"] = payload
    msg = refused(write(tmp_path, "evil.pt", pt_bytes(d)), errors.UnsafeVoiceFileError, call)
    assert len(msg) < 250 and not Path("/tmp/voicebank-pwned").exists()


def damaged_pts() -> dict[str, bytes]:
    good = pt_bytes(upstream_dict())
    zf = zipfile.ZipFile(io.BytesIO(good))
    pkl_name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n in zf.namelist():
            data = zf.read(n)
            z.writestr(n, data[: len(data) // 2] if n == pkl_name else data)
    return {"truncated": good[: len(good) // 2], "cut-by-one": good[:-1], "half-pickle": out.getvalue(),
            "garbage-pickle": b"\x80\x02" + bytes(range(256)) * 4, "protocol-only": b"\x80\x04"}


@pytest.mark.parametrize("case", sorted(damaged_pts()))
def test_a_damaged_pt_is_not_called_malicious(tmp_path, case):
    with pytest.raises(errors.VoiceFileError) as e:
        Voice.load(write(tmp_path, "v.pt", damaged_pts()[case]))
    assert not isinstance(e.value, errors.UnsafeVoiceFileError), str(e.value)
    msg = str(e.value)
    assert "refused" not in msg and "malicious" not in msg and "PyTorch" not in msg and len(msg) < 400


# --- writing: never NaN, never half a file -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("field", ["t3.speaker_emb", "gen.prompt_feat", "gen.embedding", "t3.emotion_adv"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_voices_are_never_written(tmp_path, suffix, field, bad):
    part, key = field.split(".")
    voice = Voice.load(VOICE_FILE)
    getattr(voice, part).__dict__[key] = getattr(getattr(voice, part), key).clone().fill_(bad)
    with pytest.raises(errors.NonFiniteOutputError):
        voice.save(tmp_path / f"v{suffix}")
    with pytest.raises(errors.NonFiniteOutputError):
        voice.to_bytes()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("x", [float("nan"), float("inf"), -0.1, 2.5, "abc", None, True])
def test_with_exaggeration_checks_its_value(x):
    with pytest.raises(errors.InvalidOptionError):
        GOOD.with_exaggeration(x)  # type: ignore[arg-type]


def test_a_good_upstream_file_still_loads_and_imports(tmp_path):
    root = tmp_path / "lib"
    build_library(root)
    with Library(root, engine=FakeEngine()) as lib:
        assert lib.import_file(OTHER_VOICE_FILE, "zed").status == "added" and lib.check().ok
