"""Kaldi-style log mel filterbank, equal to ``torchaudio.compliance.kaldi.fbank`` with its defaults.

CAM++ (the S3Gen speaker encoder) is fed ``kaldi.fbank(wav16, num_mel_bins=80)`` of the 16 kHz
reference.  This module computes the same features in float32 torch arithmetic without torchaudio:

* frames of 25 ms (400 samples) every 10 ms (160 samples), only frames that fit (``snip_edges``);
* per frame: remove the DC offset, pre-emphasis 0.97 (the first sample is its own predecessor), Povey
  window ``hann(400, periodic=False) ** 0.85``, zero-pad to 512, ``|rfft|**2``;
* 80 triangular filters equally spaced on Kaldi's mel scale ``1127 ln(1 + f / 700)`` from 20 Hz to
  Nyquist, built in float32 like torchaudio's ``get_mel_banks``;
* natural log, floored at float32 epsilon.

Dither is 0 and the energy column is not produced (``use_energy=False``), so neither is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class FbankConfig:
    """The constants of torchaudio's ``kaldi.fbank`` defaults (only the ones that apply are listed)."""

    sample_rate: int = 16000
    frame_length: int = 400  # 25 ms at 16 kHz
    frame_shift: int = 160  # 10 ms at 16 kHz
    n_fft: int = 512  # frame length rounded up to a power of two
    preemphasis: float = 0.97
    povey_power: float = 0.85
    low_freq: float = 20.0
    high_freq: float = 8000.0  # Nyquist (Kaldi's high_freq=0 means "at Nyquist")


DEFAULT_CONFIG = FbankConfig()
# Kaldi's floor on the mel energies before the log: std::numeric_limits<float>::epsilon().
FLOAT32_EPS = torch.finfo(torch.float32).eps


def _mel(freq: torch.Tensor) -> torch.Tensor:
    """Kaldi mel scale of ``freq`` (Hz), in the tensor's dtype."""
    return 1127.0 * (1.0 + freq / 700.0).log()


def _mel_scalar(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


@lru_cache(maxsize=8)
def _mel_banks(num_bins: int, cfg: FbankConfig) -> torch.Tensor:
    """Triangular mel filters as float32 ``(num_bins, n_fft // 2 + 1)``.

    The arithmetic mirrors torchaudio's ``get_mel_banks`` step for step in float32 (the band edges are
    Python floats combined with float32 tensors), so the filters are bit-identical.  The Nyquist bin gets
    a zero weight, as in torchaudio.  The tensor is shared: do not modify it.
    """
    if num_bins <= 3:
        raise ValueError(f"fbank needs more than 3 mel bins, got {num_bins}")
    mel_low = _mel_scalar(cfg.low_freq)
    mel_high = _mel_scalar(cfg.high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)

    index = torch.arange(num_bins, dtype=torch.float32)[:, None]
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta

    bin_width = cfg.sample_rate / cfg.n_fft
    mel = _mel(bin_width * torch.arange(cfg.n_fft // 2, dtype=torch.float32))[None, :]
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (num_bins, n_fft // 2)
    banks = torch.nn.functional.pad(banks, (0, 1))  # Nyquist bin: weight 0
    banks.requires_grad_(False)
    return banks


@lru_cache(maxsize=4)
def _povey_window(cfg: FbankConfig) -> torch.Tensor:
    """Povey window of ``cfg.frame_length`` samples, float32."""
    return torch.hann_window(cfg.frame_length, periodic=False, dtype=torch.float32).pow(cfg.povey_power)


def num_frames(n: int, cfg: FbankConfig = DEFAULT_CONFIG) -> int:
    """Number of fbank frames for ``n`` samples (``snip_edges=True``); 0 below one frame."""
    return 0 if n < cfg.frame_length else 1 + (n - cfg.frame_length) // cfg.frame_shift


def fbank(wav16: torch.Tensor, num_mel_bins: int = 80, cfg: FbankConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """Kaldi log mel filterbank of a 16 kHz mono waveform.

    ``wav16`` is a float32 tensor of shape ``(n,)`` (or ``(1, n)``) with samples in [-1, 1] at
    ``cfg.sample_rate`` (16 kHz); it is not rescaled to int16.  Returns float32 ``(frames, num_mel_bins)``
    with ``frames = 1 + (n - 400) // 160``, equal to ``torchaudio.compliance.kaldi.fbank(wav16[None],
    num_mel_bins=num_mel_bins)``.  No mean is subtracted.  Raises ``ValueError`` when ``n`` is shorter than
    one 25 ms frame (400 samples).
    """
    if wav16.dim() == 2 and wav16.shape[0] == 1:
        wav16 = wav16[0]
    if wav16.dim() != 1:
        raise ValueError(f"fbank expects a mono waveform of shape (n,), got {tuple(wav16.shape)}")
    n = wav16.shape[0]
    if n < cfg.frame_length:
        raise ValueError(
            f"audio too short for a filterbank: {n} samples at {cfg.sample_rate} Hz, "
            f"need at least {cfg.frame_length} ({1000 * cfg.frame_length / cfg.sample_rate:g} ms)"
        )
    x = wav16.to(torch.float32)

    frames = x.unfold(0, cfg.frame_length, cfg.frame_shift)  # (m, 400), a view
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat((frames[:, :1], frames[:, :-1]), dim=1)
    frames = frames - cfg.preemphasis * previous
    frames = frames * _povey_window(cfg).to(frames.device)
    frames = torch.nn.functional.pad(frames, (0, cfg.n_fft - cfg.frame_length))

    power = torch.fft.rfft(frames).abs().pow(2.0)  # (m, 257)
    # multiply by the transposed view, as torchaudio does (same BLAS layout, same rounding)
    energies = torch.mm(power, _mel_banks(num_mel_bins, cfg).to(power.device).T)
    return torch.clamp(energies, min=FLOAT32_EPS).log()
