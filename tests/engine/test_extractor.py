"""Extractor behaviour beyond parity: batching, the bf16 opt-in, error order, thread hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from voicebank.audio import dsp
from voicebank.engine import Extractor
from voicebank.errors import SilentAudioError

from golden_cases import INPUTS

CLIPS = [INPUTS / "short_3s_22k.wav", INPUTS / "odd_7p33s_48k.ogg", INPUTS / "aishell_4s.wav"]


@pytest.fixture(scope="module")
def extractor(golden_weights_dir):
    return Extractor.from_local(golden_weights_dir)


def test_extract_many_equals_extract_to_float32_rounding(extractor):
    done: list[int] = []
    batched = extractor.extract_many(CLIPS, batch_size=3, progress=done.append)
    assert sum(done) == len(CLIPS) and len(done) == -(-len(CLIPS) // 3)
    for clip, voice in zip(CLIPS, batched, strict=True):
        single = extractor.extract(clip).tensors()
        assert voice.metadata == extractor.extract(clip).metadata
        for k, t in voice.tensors().items():
            if t.is_floating_point() and k != "gen.prompt_feat":  # the batched embeddings round differently
                torch.testing.assert_close(t, single[k], rtol=1e-6, atol=1e-7, msg=f"{clip.name}: {k}")
            else:  # tokens, lengths, mels: identical
                assert torch.equal(t, single[k]), (clip.name, k)
    again = extractor.extract_many(CLIPS, batch_size=3)
    for a, b in zip(batched, again, strict=True):  # the same batches give the same bits
        assert all(torch.equal(t, b.tensors()[k]) for k, t in a.tensors().items())


def test_extract_many_names_the_first_unusable_clip_in_input_order(extractor, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24000, dtype=np.float32), 24000)
    with pytest.raises(SilentAudioError, match=r"silent\.wav"):
        extractor.extract_many([CLIPS[0], silent, tmp_path / "missing.wav"], batch_size=1)


def test_embed_names_the_first_unusable_clip_in_input_order(extractor, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24000, dtype=np.float32), 24000)
    with pytest.raises(SilentAudioError, match=r"silent\.wav"):
        extractor.embed([CLIPS[0], silent, tmp_path / "missing.wav"])


def test_blas_thread_count_is_restored():
    from threadpoolctl import threadpool_info

    def numpy_blas_threads() -> list[int]:
        # numpy's own OpenBLAS (scipy, once imported, brings another that numpy's products never use)
        return [i["num_threads"] for i in threadpool_info()
                if i["internal_api"] == "openblas" and "numpy" in i["filepath"]]

    before = numpy_blas_threads()
    if not before:
        pytest.skip("numpy is not linked against a bundled OpenBLAS")
    with dsp._blas_single_threaded():
        inside = numpy_blas_threads()
    after = numpy_blas_threads()
    assert after == before and all(n == 1 for n in inside)


def test_bf16_is_an_opt_in_that_is_labelled_and_close(golden_weights_dir, extractor):
    fast = Extractor.from_local(golden_weights_dir, precision="bf16")
    exact_voice = extractor.extract(INPUTS / "mid_12s.flac")
    fast_voice = fast.extract(INPUTS / "mid_12s.flac")
    assert fast_voice.metadata.weights_fingerprint != exact_voice.metadata.weights_fingerprint
    e, f = exact_voice.tensors(), fast_voice.tensors()
    assert torch.equal(e["t3.speaker_emb"], f["t3.speaker_emb"]) and torch.equal(e["gen.embedding"], f["gen.embedding"])
    agree = (e["gen.prompt_token"] == f["gen.prompt_token"]).float().mean().item()
    assert 0.9 <= agree <= 1.0
    with pytest.raises(ValueError, match="precision"):
        Extractor.from_local(golden_weights_dir, precision="int3")  # type: ignore[arg-type]


def test_exaggeration_must_be_finite(extractor):
    with pytest.raises(ValueError, match="finite"):
        extractor.extract(CLIPS[0], exaggeration=float("nan"))
