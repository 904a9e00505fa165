"""Pure signal-processing functions shared by the models.

Every function is deterministic and side-effect free; shapes and sample rates are in the docstrings.
The arithmetic follows upstream Chatterbox (librosa / torch) closely enough to reproduce its features to
float32 precision: where the order of float operations matters, the comments say why.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Slaney mel scale constants (librosa's default, htk=False)
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel value of each frequency in Hz (float64)."""
    hz = np.asanyarray(hz, dtype=np.float64)
    mels = hz / _F_SP
    log_part = hz >= _MIN_LOG_HZ
    return np.where(log_part, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-300) / _MIN_LOG_HZ) / _LOGSTEP, mels)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel` (float64)."""
    mels = np.asanyarray(mels, dtype=np.float64)
    freqs = _F_SP * mels
    return np.where(mels >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)), freqs)


@lru_cache(maxsize=16)
def _mel_filters_cached(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    # librosa stores the triangles as float32 first and scales them afterwards in float64; doing the same
    # keeps the basis bit-identical to librosa.filters.mel.
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2:] - mel_f[:-2])
    out = (weights.astype(np.float64) * enorm[:, None]).astype(np.float32)
    out.setflags(write=False)
    return out


def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised mel filterbank, identical to ``librosa.filters.mel`` (htk=False, norm="slaney").

    Returns a read-only float32 array of shape ``(n_mels, n_fft // 2 + 1)``.
    """
    return _mel_filters_cached(int(sample_rate), int(n_fft), int(n_mels), float(fmin),
                               float(sample_rate / 2 if fmax is None else fmax))
