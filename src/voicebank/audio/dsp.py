"""Pure signal-processing functions shared by the models.

Every function is deterministic and side-effect free; shapes and sample rates are in the docstrings.
The arithmetic follows upstream Chatterbox (librosa / torch) closely enough to reproduce its features to
float32 precision: where the order of float operations matters, the comments say why.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

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


# --- voice-encoder front end (librosa arithmetic) ---------------------------------------------------

TRIM_FRAME_LENGTH = 2048
TRIM_HOP_LENGTH = 512


def trim_silence(wav: np.ndarray, top_db: float = 20.0) -> np.ndarray:
    """Cut leading and trailing silence like ``librosa.effects.trim(wav, top_db=top_db)``.

    ``wav``: (n,) float32 -> (m,) float32, a view of ``wav``.  Frames of 2048 samples every 512 whose
    RMS power is more than ``top_db`` below the loudest frame count as silence.
    """
    n_frames = 1 + wav.shape[0] // TRIM_HOP_LENGTH
    padded = np.pad(wav, TRIM_FRAME_LENGTH // 2)  # center=True, constant padding
    # librosa frames the signal as a (frame_length, n_frames) view and averages over axis 0; numpy then
    # accumulates row by row in float32.  The same layout gives the same rounding, so the same cut.
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(TRIM_FRAME_LENGTH, n_frames), strides=(padded.strides[0], padded.strides[0] * TRIM_HOP_LENGTH),
        writeable=False)
    power = np.mean(frames**2, axis=0)
    mse = np.sqrt(power) ** 2
    db = 10.0 * np.log10(np.maximum(np.float32(1e-10), mse))
    db -= 10.0 * np.log10(np.maximum(np.float32(1e-10), mse.max()))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return wav[:0]
    start = int(loud[0]) * TRIM_HOP_LENGTH
    end = min(wav.shape[0], (int(loud[-1]) + 1) * TRIM_HOP_LENGTH)
    return wav[start:end]


@lru_cache(maxsize=8)
def periodic_hann(n: int) -> np.ndarray:
    """Periodic Hann window of length ``n`` (float64), as ``scipy.signal.get_window("hann", n)``."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def stft_power(wav: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """``|librosa.stft(wav, n_fft, hop_length, center=True, pad_mode="reflect")|**2``.

    ``wav``: (n,) float32 -> (n_fft // 2 + 1, 1 + n // hop_length) float32.  The transform runs in
    float64 and is stored as complex64, as librosa does.
    """
    pad = n_fft // 2
    padded = np.pad(wav, pad, mode="reflect") if wav.shape[0] > pad else np.pad(wav, pad)
    n_frames = 1 + (padded.shape[0] - n_fft) // hop_length
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, n_fft), strides=(padded.strides[0] * hop_length, padded.strides[0]),
        writeable=False)
    spec = np.fft.rfft(frames * periodic_hann(n_fft), axis=-1).astype(np.complex64)
    mag = np.abs(spec)
    return np.ascontiguousarray((mag**2).T)


@lru_cache(maxsize=1)
def _openblas_pools() -> Any:
    """threadpoolctl's handle on the OpenBLAS libraries numpy (and scipy) loaded, or ``None``."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a core dependency
        return None
    pools = ThreadpoolController().select(internal_api="openblas")
    return pools if pools.lib_controllers else None


_blas_lock = threading.Lock()
_blas_depth = 0
_blas_limiter: Any = None


@contextmanager
def _blas_single_threaded() -> Iterator[None]:
    """Run numpy's BLAS on the calling thread only, then restore its thread count.

    After a multi-threaded call, OpenBLAS's worker threads spin for a while (~0.1 s) waiting for more work,
    taking a core from torch: the voice encoder's LSTM that follows ran at half speed.  OpenBLAS splits a
    product between threads without changing any element's arithmetic, so the result is the same bits.
    Without a recognisable OpenBLAS this does nothing.
    """
    pools = _openblas_pools()
    if pools is None:
        yield
        return
    global _blas_depth, _blas_limiter
    with _blas_lock:  # the thread count is process-wide: the first caller in limits it, the last one out restores it
        if _blas_depth == 0:
            _blas_limiter = pools.limit(limits=1)
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def voice_encoder_mel(wav16: np.ndarray, n_mels: int = 40) -> np.ndarray:
    """Power mel spectrogram of the voice encoder: (n,) float32 @ 16 kHz -> (frames, n_mels) float32.

    400-point STFT every 160 samples (10 ms), Slaney mel basis up to 8 kHz, no log.
    """
    power = stft_power(wav16, n_fft=400, hop_length=160)
    with _blas_single_threaded():
        mel = np.dot(mel_filters(16000, 400, n_mels, 0.0, 8000.0), power)
    return np.ascontiguousarray(mel.T)


# --- S3Gen prompt features (Matcha-TTS mel, torch arithmetic) ---------------------------------------

S3GEN_N_FFT = 1920
S3GEN_HOP = 480
S3GEN_N_MELS = 80


@lru_cache(maxsize=4)
def _s3gen_mel_tables(device: str):  # -> tuple[torch.Tensor, torch.Tensor]
    import torch

    basis = torch.from_numpy(mel_filters(24000, S3GEN_N_FFT, S3GEN_N_MELS, 0.0, 8000.0).copy()).to(device)
    window = torch.hann_window(S3GEN_N_FFT, device=device)
    return basis, window


def s3gen_mel(wav24):  # (n,) torch.float32 -> (frames, 80)
    """S3Gen's prompt features: log-mel of ``wav24`` ((n,) float32 tensor @ 24 kHz) -> (n // 480, 80) float32.

    Reflect-pad 720 samples each side, 1920-point STFT every 480 samples (50 frames/s, ``center=False``),
    magnitude ``sqrt(re^2 + im^2 + 1e-9)``, Slaney mel basis (80 bins, 0-8 kHz), ``log(max(x, 1e-5))``.
    """
    import torch

    basis, window = _s3gen_mel_tables(str(wav24.device))
    pad = (S3GEN_N_FFT - S3GEN_HOP) // 2
    y = torch.nn.functional.pad(wav24.reshape(1, 1, -1), (pad, pad), mode="reflect").reshape(1, -1)
    spec = torch.view_as_real(torch.stft(y, S3GEN_N_FFT, hop_length=S3GEN_HOP, win_length=S3GEN_N_FFT,
                                         window=window, center=False, return_complex=True))
    mag = torch.sqrt(spec.pow(2).sum(-1) + 1e-9)
    mel = torch.matmul(basis, mag)
    return torch.log(torch.clamp(mel, min=1e-5))[0].T.contiguous()
