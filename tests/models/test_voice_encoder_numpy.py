"""The numpy voice encoder (issue 21): upstream's golden embeddings, the torch module's numbers within 1e-5
relative on the golden clips and the real-speech set, checkpoints read without torch (and safely)."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from safetensors.numpy import load_file

from voicebank import Engine
from voicebank.audio.reference import prepare_reference
from voicebank.errors import WeightsError, WeightsMismatchError
from voicebank.models.checkpoints import file_fingerprints, read_arrays
from voicebank.models.voice_encoder_numpy import NumpyVoiceEncoder

from audio_fixtures import REALSPEECH, resemblyzer_weights
from golden_cases import DATA, EXPECTED, INPUTS, case_name

pytestmark = pytest.mark.torchfree

VE_VARIANTS = {"tts": "english", "tts@0.7": "english", "turbo": "turbo", "mtl": "multilingual"}
"""Golden tags of the variants that have a voice encoder (VC has none)."""
PLAN = json.loads((DATA / "plan.json").read_text())
CASES = [(f, tag) for f, tags in PLAN.items() for tag in tags
         if tag in VE_VARIANTS and (EXPECTED / f"{case_name(f)}.{tag}.safetensors").exists()]
REAL = sorted(line.split("\t")[0] for line in (REALSPEECH / "MANIFEST.tsv").read_text().splitlines()[1:] if line)
REL = 1e-5


def close(a: np.ndarray, b: np.ndarray, rel: float = REL) -> bool:
    """``a`` equals ``b`` within ``rel`` of ``b``'s largest magnitude, row by row."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return bool(np.all(np.abs(a - b).max(axis=1) <= rel * np.abs(b).max(axis=1)))


@pytest.fixture(scope="module")
def engine(golden_weights_dir):
    return Engine(golden_weights_dir)


def torch_embeddings(engine: Engine, wavs16: list[np.ndarray], variant: str = "english") -> np.ndarray:
    """The torch module's embeddings of the same clips (the path the numpy one must equal)."""
    torch = pytest.importorskip("torch")
    ve = engine.voice_encoder(variant)
    with torch.inference_mode():
        return ve.embed_partials([ve.prepare(w) for w in wavs16]).numpy()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("file", "tag"), CASES)
def test_golden_speaker_embedding_on_both_paths(engine, file, tag, backend):
    variant = VE_VARIANTS[tag]
    if variant == "turbo":  # Turbo normalises loudness first, with pyloudnorm (left out of the torch-free install)
        pytest.importorskip("pyloudnorm", reason="Turbo's loudness normalisation needs pyloudnorm")
    ref = prepare_reference(str(INPUTS / file), variant)  # type: ignore[arg-type]
    if backend == "numpy":
        got = engine.embed([str(INPUTS / file)], variant=variant)[0]
    else:
        got = torch_embeddings(engine, [ref.wav16], variant)[0]
    expected = load_file(str(EXPECTED / f"{case_name(file)}.{tag}.safetensors"))["t3.speaker_emb"][0]
    assert float(got @ expected / np.linalg.norm(got) / np.linalg.norm(expected)) >= 0.99999
    assert close(got, expected)


@pytest.mark.parametrize("file", sorted({f for f, _ in CASES}))
def test_golden_partials_match_upstreams_intermediates(engine, file):
    ref = load_file(str(EXPECTED / f"{case_name(file)}.intermediates.safetensors"))
    ve = engine.numpy_voice_encoder()
    partials = ve.prepare(ref["wav16"])
    np.testing.assert_allclose(ve.forward(partials), ref["ve_partial_embeds"], atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(ve.embed_utterances([ref["wav16"]]), ref["ve_utterance_embed"].reshape(1, -1),
                               atol=1e-6, rtol=1e-5)


def test_golden_clips_equal_the_torch_path(engine):
    files = sorted({f for f, _ in CASES})
    wavs = [prepare_reference(str(INPUTS / f)).wav16 for f in files]
    assert close(engine.embed([str(INPUTS / f) for f in files]), torch_embeddings(engine, wavs))


@pytest.mark.parametrize("weights", ["golden", "resemblyzer"])
def test_real_speech_equals_the_torch_path(golden_weights_dir, weights):
    """The 40 clips of the real-speech set, with the golden random weights and with Resemblyzer's trained ones."""
    path = golden_weights_dir if weights == "golden" else resemblyzer_weights()
    if path is None:
        pytest.skip("resemblyzer (a test dependency) is not installed")
    engine = Engine(path)
    files = [str(REALSPEECH / f) for f in REAL]
    got = engine.embed(files)
    assert got.shape == (len(REAL), 256) and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert close(got, torch_embeddings(engine, [prepare_reference(f).wav16 for f in files]))


def test_one_clip_alone_equals_in_a_batch(engine):
    files = [str(INPUTS / f) for f in ("short_3s_22k.wav", "long_22s.flac", "aishell_4s.wav")]
    batched = engine.embed(files)
    singles = np.concatenate([engine.embed([f]) for f in files])
    np.testing.assert_allclose(batched, singles, atol=1e-6, rtol=1e-5)


def test_resemblyzer_pt_is_read_without_torch_like_torch_reads_it():
    path = resemblyzer_weights()
    if path is None:
        pytest.skip("resemblyzer (a test dependency) is not installed")
    arrays = read_arrays(path)
    assert "linear.weight" in arrays and arrays["lstm.weight_ih_l0"].shape == (1024, 40)
    NumpyVoiceEncoder.from_state(arrays)
    torch = pytest.importorskip("torch")
    from voicebank.models.checkpoints import fingerprint, read_tensors

    tensors = read_tensors(path)
    assert sorted(tensors) == sorted(arrays)
    assert all(np.array_equal(arrays[k], v.numpy()) for k, v in tensors.items())
    assert file_fingerprints(path, [None]) == [fingerprint(tensors)]
    assert torch.is_tensor(next(iter(tensors.values())))


def test_ve_pt_reads_and_fingerprints_as_with_torch(tmp_path, golden_weights_dir):
    torch = pytest.importorskip("torch")
    from voicebank.models.checkpoints import fingerprint, read_tensors

    state = read_tensors(golden_weights_dir / "ve.safetensors")
    state["odd.view"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()[1:]  # strided, offset
    state["odd.bf16"] = torch.linspace(-2, 2, 7).bfloat16()
    torch.save(state, tmp_path / "ve.pt")
    arrays = read_arrays(tmp_path / "ve.pt")
    for k, v in state.items():
        assert np.array_equal(arrays[k], v.float().numpy()), k
    assert file_fingerprints(tmp_path / "ve.pt", [None]) == [fingerprint(state)]


class _Hostile:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pickle_naming_anything_else_is_refused(tmp_path):
    zipped = tmp_path / "evil.pt"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _Hostile()}, protocol=2))
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps(_Hostile(), protocol=2))
    for path in (zipped, legacy):
        with pytest.raises(WeightsError, match="never does"):
            read_arrays(path)
    junk = tmp_path / "junk.pt"
    for seed in range(500):  # arbitrary bytes after a pickle header: whatever pickle makes of them, one error
        junk.write_bytes(b"\x80\x02" + np.random.default_rng(seed).bytes(64))
        with pytest.raises(WeightsError):
            read_arrays(junk)


def test_an_archive_without_a_state_dict_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"")
    bad = tmp_path / "empty.pt"
    bad.write_bytes(buf.getvalue())
    with pytest.raises(WeightsError):
        read_arrays(bad)


def test_strict_layout(golden_weights_dir):
    state = read_arrays(golden_weights_dir / "ve.safetensors")
    state.pop("lstm.weight_hh_l2")
    state["extra.weight"] = np.zeros(3, np.float32)
    state["proj.bias"] = np.zeros(7, np.float32)
    with pytest.raises(WeightsMismatchError) as info:
        NumpyVoiceEncoder.from_state(state)
    msg = str(info.value)
    assert "missing: lstm.weight_hh_l2" in msg and "unexpected: extra.weight" in msg
    assert "proj.bias: (7,) != (256,)" in msg


def test_silence_stays_finite(engine):
    ve = engine.numpy_voice_encoder()
    out = ve.embed_partials([np.zeros((2, 160, 40), np.float32)])
    assert np.isfinite(out).all()
