"""The S3Gen speaker-embedding path: sinc resampling, Kaldi fbank and CAM++ against upstream's goldens."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from voicebank.audio.fbank import fbank, num_frames
from voicebank.audio.sinc import resampled_length, sinc_resample
from voicebank.errors import WeightsMismatchError
from voicebank.models.campplus import MIN_SAMPLES, CAMPPlus
from voicebank.models.checkpoints import read_tensors, strip_prefix

from golden_cases import EXPECTED, INPUTS, case_name
from golden_weights import DATA

CASES = sorted(case_name(p.name) for p in INPUTS.iterdir())
PREFIX = "speaker_encoder."


def _embedding_files() -> list[tuple[str, str]]:
    """(case, variant) pairs whose golden ``gen.embedding`` comes from the plain 10 s ``ref16``.

    Turbo is left out: it loudness-normalises the clip first, so its ``ref16`` is not the intermediate.
    """
    out = []
    for case in CASES:
        for variant in ("tts", "vc", "mtl"):
            if (EXPECTED / f"{case}.{variant}.safetensors").is_file():
                out.append((case, variant))
    return out


@pytest.fixture(scope="module")
def speaker_state(golden_weights_dir) -> dict[str, torch.Tensor]:
    state = read_tensors(golden_weights_dir / "s3gen.safetensors", prefixes=(PREFIX,))
    return strip_prefix(state, PREFIX)


@pytest.fixture(scope="module")
def campplus(speaker_state) -> CAMPPlus:
    return CAMPPlus.from_state(speaker_state)


# --- resampling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_resample_matches_torchaudio(case, golden_intermediates):
    inter = golden_intermediates(case)
    ref16 = sinc_resample(inter["wav24"][:240000], 24000, 16000)
    expected = inter["ref16"]
    assert ref16.dtype == torch.float32
    assert ref16.shape == expected.shape
    assert (ref16 - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("n", [1, 2, 441, 1000, 44100, 123457, 399874])
def test_resample_length_44k1_to_16k(n):
    # torchaudio rounds n * new / orig to float32 before the ceiling (399874 is a case where that loses
    # one sample against the exact ceiling); sinc_resample follows it.
    expected = math.ceil(float(np.float32(160 * n / 441)))
    assert resampled_length(n, 44100, 16000) == expected
    assert abs(expected - math.ceil(n * 16000 / 44100)) <= 1
    out = sinc_resample(torch.zeros(n), 44100, 16000)
    assert out.shape == (expected,)


def test_resample_length_24k_to_16k_is_exact_ceiling():
    for n in (1, 2, 3, 4, 5, 239999, 240000, 240001, 10**7 + 1):
        assert resampled_length(n, 24000, 16000) == math.ceil(2 * n / 3)


def test_resample_keeps_a_band_limited_tone_and_batches():
    sr_in, sr_out, freq = 44100, 16000, 1000.0
    t_in = torch.arange(sr_in, dtype=torch.float64) / sr_in
    tone = torch.sin(2 * math.pi * freq * t_in).to(torch.float32)
    out = sinc_resample(tone, sr_in, sr_out)
    t_out = torch.arange(out.shape[0], dtype=torch.float64) / sr_out
    ideal = torch.sin(2 * math.pi * freq * t_out)
    interior = slice(200, -200)  # away from the zero-padded edges
    assert (out[interior].double() - ideal[interior]).abs().max().item() < 2e-3

    batch = torch.stack([tone, 0.5 * tone.flip(0)])
    both = sinc_resample(batch, sr_in, sr_out)
    assert both.shape == (2, out.shape[0])
    torch.testing.assert_close(both[0], out, rtol=0, atol=1e-6)
    assert sinc_resample(tone, 16000, 16000) is tone


# --- fbank ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_fbank_matches_torchaudio_kaldi(case, golden_intermediates):
    inter = golden_intermediates(case)
    feats = fbank(inter["ref16"])
    expected = inter["fbank"]  # before the mean subtraction
    assert feats.dtype == torch.float32
    assert feats.shape == expected.shape == (num_frames(inter["ref16"].shape[0]), 80)
    # torch.fft rounds differently per CPU (see FFT_TOLERANCE in tests/engine/test_parity.py): relative to the largest
    # log-energy, up to ~1e-4 on an Intel Xeon (bit-identical on the AMD machine the goldens came from)
    scale = max(1.0, expected.abs().max().item())
    assert (feats - expected).abs().max().item() / scale <= 5e-4


def test_fbank_too_short():
    assert fbank(torch.zeros(400)).shape == (1, 80)
    with pytest.raises(ValueError, match="too short"):
        fbank(torch.zeros(399))
    with pytest.raises(ValueError):
        fbank(torch.zeros(2, 1000))


# --- CAM++ ---------------------------------------------------------------------------------------------


def test_layout_matches_upstream_keys():
    with torch.device("meta"):
        module = CAMPPlus()
    ours = {k: list(v.shape) for k, v in module.state_dict().items()}
    raw = json.loads((DATA / "keys.json").read_text())["s3gen_speaker_encoder"]
    upstream = {name[len(PREFIX):]: shape for name, shape, _ in raw}
    assert ours == upstream


def test_from_state_assigns_everything(campplus, speaker_state):
    assert not campplus.training
    tensors = list(campplus.parameters()) + list(campplus.buffers())
    assert all(t.device.type == "cpu" for t in tensors)
    assert all(not p.requires_grad for p in campplus.parameters())
    assert sum(p.numel() for p in campplus.parameters()) == 6_848_544
    name = "xvector.block2.tdnnd7.cam_layer.linear_local.weight"
    assert torch.equal(campplus.state_dict()[name], speaker_state[name])


@pytest.mark.parametrize(("case", "variant"), _embedding_files())
def test_xvector_matches_upstream(case, variant, campplus, golden_intermediates):
    expected = load_file(str(EXPECTED / f"{case}.{variant}.safetensors"))["gen.embedding"]
    emb = campplus.xvector(golden_intermediates(case)["ref16"])
    assert emb.shape == (1, 192) and emb.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(emb.double(), expected.double()).item()
    assert cos >= 0.9999  # the golden README's floor
    # far closer in practice (bit-identical on the reference machine); allow thread-count noise
    assert ((emb - expected).norm() / expected.norm()).item() <= 1e-4


def test_xvectors_one_by_one(campplus, golden_intermediates):
    wavs = [golden_intermediates(c)["ref16"] for c in ("short_3s_22k", "aishell_4s")]
    embs = campplus.xvectors(wavs)
    assert len(embs) == 2
    for wav, emb in zip(wavs, embs, strict=True):
        assert torch.equal(emb, campplus.xvector(wav))


def test_xvectors_batches_equal_lengths(campplus, golden_intermediates):
    a = golden_intermediates("short_3s_22k")["ref16"]
    b = golden_intermediates("aishell_4s")["ref16"][: a.shape[0]]  # same length: one batch
    c = golden_intermediates("aishell_4s")["ref16"]  # another length: alone
    embs = campplus.xvectors([a, c, b])
    assert [e.shape for e in embs] == [(1, 192)] * 3
    assert torch.equal(embs[1], campplus.xvector(c))
    for wav, emb in ((a, embs[0]), (b, embs[2])):
        torch.testing.assert_close(emb, campplus.xvector(wav), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(embs[0], embs[2])


def test_xvector_too_short(campplus):
    noise = 0.1 * torch.randn(MIN_SAMPLES, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(campplus.xvector(noise)).all()
    with pytest.raises(ValueError, match="too short"):
        campplus.xvector(torch.zeros(MIN_SAMPLES - 1))
    with pytest.raises(ValueError, match="too short"):
        campplus.xvector(torch.zeros(100))


def test_wrong_or_missing_key_is_refused(speaker_state):
    missing = dict(speaker_state)
    del missing["xvector.dense.linear.weight"]
    with pytest.raises(WeightsMismatchError, match="missing"):
        CAMPPlus.from_state(missing)

    renamed = dict(speaker_state)
    renamed["xvector.dense.linear.weights"] = renamed.pop("xvector.dense.linear.weight")
    with pytest.raises(WeightsMismatchError, match="unexpected"):
        CAMPPlus.from_state(renamed)

    reshaped = dict(speaker_state)
    reshaped["head.conv1.weight"] = torch.zeros(32, 1, 3, 4)
    with pytest.raises(WeightsMismatchError, match="wrong shape"):
        CAMPPlus.from_state(reshaped)

    prefixed = {PREFIX + k: v for k, v in speaker_state.items()}
    with pytest.raises(WeightsMismatchError):
        CAMPPlus.from_state(prefixed)
