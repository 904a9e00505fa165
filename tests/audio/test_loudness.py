"""BS.1770 loudness in numpy equals pyloudnorm's (which Turbo's normalisation keeps using)."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from voicebank.audio import Clip
from voicebank.audio.loudness import integrated_loudness

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
