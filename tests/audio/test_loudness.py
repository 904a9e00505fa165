"""BS.1770 loudness in numpy equals pyloudnorm's (which Turbo's normalisation keeps using)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from voicebank.audio import Clip
from voicebank.audio.loudness import fast_size, integrated_loudness, k_weight

from audio_fixtures import GOLDEN_INPUTS, speechlike


@pytest.mark.parametrize("path", sorted(GOLDEN_INPUTS.iterdir()), ids=lambda p: p.name)
def test_equals_pyloudnorm_on_real_clips(path):
    clip = Clip.read(path)
    want = pyloudnorm.Meter(clip.sample_rate).integrated_loudness(clip.samples.astype(np.float64))
    assert integrated_loudness(clip.samples, clip.sample_rate) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("gain", [1.0, 0.01])
def test_equals_pyloudnorm_at_any_rate_and_level(rate, gain):
    wav = (gain * speechlike(2.3, rate)).astype(np.float64)
    want = pyloudnorm.Meter(rate).integrated_loudness(wav)
    assert integrated_loudness(wav, rate) == pytest.approx(want, abs=1e-6)


def test_the_fft_size_is_the_least_5_smooth_number_at_or_over_n():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in [1, 2, 7, 97, 1000, 35_199, 65_537, 100_001, *range(2_000, 2_200)]:
        want = next(m for m in range(n, 2 * n + 1) if smooth(m))
        assert fast_size(n) == want


@pytest.mark.parametrize("rate", [8000, 48000, 192000])
def test_the_truncated_filter_equals_the_whole_one(rate):
    """The impulse response is cut at 0.2 s: filtering with a 2 s one gives the same samples."""
    from voicebank.audio import loudness

    wav = speechlike(1.5, rate).astype(np.float64)
    cut = loudness.k_weighting_impulse(rate)  # 0.2 s, as used
    x = np.zeros(2 * rate)
    x[0] = 1.0
    whole = x
    for kind, gain, q, fc in (("high_shelf", 4.0, 1 / np.sqrt(2), 1500.0), ("high_pass", 0.0, 0.5, 38.0)):
        b, a = loudness._biquad(kind, gain, q, fc, rate)
        y = np.zeros_like(whole)
        x1 = x2 = y1 = y2 = 0.0
        for i, xi in enumerate(whole[: len(cut) + rate // 10]):  # to 0.3 s: far past the cut
            y[i] = b[0] * xi + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
            x2, x1, y2, y1 = x1, xi, y1, y[i]
        whole = y
    tail = np.abs(whole[len(cut): len(cut) + rate // 10]).max()
    assert tail < 1e-16 * np.abs(cut).max()
    np.testing.assert_allclose(whole[: len(cut)], cut, rtol=0, atol=1e-18)
    reference = np.convolve(wav, whole[: len(cut) + rate // 10])[: len(wav)]
    np.testing.assert_allclose(k_weight(wav, rate), reference, rtol=0, atol=1e-12)


def test_unmeasurable_clips_give_none():
    assert integrated_loudness(np.zeros(48000), 24000) is None  # digital silence: nothing passes the gates
    assert integrated_loudness(np.ones(100), 24000) is None  # shorter than one 400 ms block


def test_no_scipy_for_an_embedding_add():
    import subprocess
    import sys

    code = ("import sys; from voicebank.audio import Clip; from voicebank.audio.inspection import inspect_clip; "
            f"inspect_clip(Clip.read({str(GOLDEN_INPUTS / 'mid_12s.flac')!r})); print('scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
