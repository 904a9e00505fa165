"""Integrated loudness (ITU-R BS.1770-4, LUFS) in numpy alone, for the reference report.

The report runs on every ``add``; measuring loudness through pyloudnorm would import ``scipy.signal`` (about
1.5 s on a small machine) for one number.  Here the K-weighting filter (a high shelf of +4 dB above 1.5 kHz and a
38 Hz high-pass, the biquads of the Audio EQ Cookbook with pyloudnorm's parameters) is applied by FFT convolution
with its impulse response, truncated where it has decayed below float64 resolution (an FFT of a 5-smooth size:
half the time of the next power of two), and the gating follows the
standard: 400 ms blocks every 100 ms, an absolute gate at -70 LUFS and a relative gate 10 LU below the mean.
It agrees with pyloudnorm to about 1e-6 LU.  Turbo's loudness *normalisation* still uses pyloudnorm itself
(:func:`voicebank.audio.reference.normalise_loudness`), to match upstream bit for bit.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

BLOCK_SECONDS = 0.4
BLOCK_STEP = 0.25
"""Blocks start every quarter block (75 % overlap)."""
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
_IMPULSE_SECONDS = 0.2
"""The K-weighting impulse response is below 1e-16 of its peak from 0.16 s on, at any rate from 8 to 192 kHz."""


def _biquad(kind: str, gain_db: float, q: float, fc: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Audio EQ Cookbook biquad ``(b, a)`` (``a[0] == 1``)."""
    a_gain = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * fc / rate
    alpha = math.sin(w0) / (2.0 * q)
    cos = math.cos(w0)
    if kind == "high_shelf":
        sq = 2.0 * math.sqrt(a_gain) * alpha
        b = [a_gain * ((a_gain + 1) + (a_gain - 1) * cos + sq), -2 * a_gain * ((a_gain - 1) + (a_gain + 1) * cos),
             a_gain * ((a_gain + 1) + (a_gain - 1) * cos - sq)]
        a = [(a_gain + 1) - (a_gain - 1) * cos + sq, 2 * ((a_gain - 1) - (a_gain + 1) * cos),
             (a_gain + 1) - (a_gain - 1) * cos - sq]
    elif kind == "high_pass":
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return np.array(b) / a[0], np.array(a) / a[0]


@lru_cache(maxsize=8)
def k_weighting_impulse(rate: int) -> np.ndarray:
    """The impulse response of the K-weighting filter at ``rate`` Hz: (n,) float64, n = 0.2 s."""
    n = max(16, int(_IMPULSE_SECONDS * rate))
    x = np.zeros(n)
    x[0] = 1.0
    for kind, gain, q, fc in (("high_shelf", 4.0, 1.0 / math.sqrt(2.0), 1500.0), ("high_pass", 0.0, 0.5, 38.0)):
        b, a = _biquad(kind, gain, q, fc, rate)
        y = np.zeros(n)
        x1 = x2 = y1 = y2 = 0.0
        for i in range(n):  # n = rate / 2 steps, once per rate
            xi = x[i]
            yi = b[0] * xi + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
            x2, x1, y2, y1 = x1, xi, y1, yi
            y[i] = yi
        x = y
    return x


@lru_cache(maxsize=32)
def _k_weighting_spectrum(rate: int, size: int) -> np.ndarray:
    """The rfft of :func:`k_weighting_impulse` zero-padded to ``size`` (read-only: it is shared)."""
    spectrum = np.fft.rfft(k_weighting_impulse(rate), size)
    spectrum.flags.writeable = False
    return spectrum


def fast_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` (an FFT size numpy transforms quickly)."""
    best = 1 << max(0, n - 1).bit_length()
    fives = 1
    while fives < best:
        threes = fives
        while threes < best:
            size = threes << max(0, (n - 1) // threes).bit_length()  # the least power-of-two multiple >= n
            best = min(best, size)
            threes *= 3
        fives *= 5
    return best


def k_weight(wav: np.ndarray, rate: int) -> np.ndarray:
    """``wav`` (n,) through the K-weighting filter (causal, zero initial state): (n,) float64."""
    n = wav.shape[0]
    size = fast_size(n + k_weighting_impulse(rate).shape[0] - 1)
    out = np.fft.irfft(np.fft.rfft(wav.astype(np.float64), size) * _k_weighting_spectrum(rate, size), size)
    return out[:n]


def integrated_loudness(wav: np.ndarray, rate: int) -> float | None:
    """Integrated loudness of mono ``wav`` (n,) at ``rate`` Hz in LUFS; ``None`` when the clip is shorter than one
    400 ms block or nothing passes the gates."""
    n = wav.shape[0]
    seconds = n / rate
    if seconds < BLOCK_SECONDS:
        return None
    filtered = k_weight(wav, rate)
    n_blocks = int(np.round((seconds - BLOCK_SECONDS) / (BLOCK_SECONDS * BLOCK_STEP))) + 1
    squares = np.concatenate([[0.0], np.cumsum(np.square(filtered))])
    starts = np.array([int(BLOCK_SECONDS * (j * BLOCK_STEP) * rate) for j in range(n_blocks)])
    ends = np.array([int(BLOCK_SECONDS * (j * BLOCK_STEP + 1) * rate) for j in range(n_blocks)])
    ends = np.minimum(ends, n)
    z = (squares[ends] - squares[np.minimum(starts, n)]) / (BLOCK_SECONDS * rate)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(z)
    gated = z[block_lufs >= ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return None
    relative = -0.691 + 10.0 * math.log10(float(np.mean(gated))) + RELATIVE_GATE_LU
    final = z[(block_lufs > relative) & (block_lufs > ABSOLUTE_GATE_LUFS)]
    if final.size == 0:
        return None
    value = -0.691 + 10.0 * math.log10(float(np.mean(final)))
    return value if math.isfinite(value) else None
