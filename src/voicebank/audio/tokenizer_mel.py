"""The S3 speech tokenizer's input: a Whisper-style log-mel of 16 kHz speech, 100 frames per second.

Exactly as upstream's ``S3Tokenizer.log_mel_spectrogram``: a centred 400-point STFT every 160 samples
(periodic Hann window, reflect padding) without its last frame, power ``|X|**2``, a Slaney mel basis
(:func:`~voicebank.audio.dsp.mel_filters`, 0-8 kHz), ``log10`` clamped at 1e-10, floored at the clip's maximum
minus 8, then ``(x + 4) / 4``.  The tokenizer itself is :mod:`voicebank.models.speech_tokenizer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from ..chatterbox import S3_SR
from .dsp import mel_filters

N_MELS = 128
"""Mel bins of the tokenizer's input."""
N_FFT = 400
"""STFT size and Hann window length (25 ms at 16 kHz)."""
HOP_SAMPLES = 160
"""STFT hop (10 ms at 16 kHz): 100 mel frames per second."""
LOG_FLOOR = 1e-10
"""Smallest mel power before ``log10`` (power units, i.e. -100 dB)."""
DYNAMIC_RANGE_LOG10 = 8.0
"""Log-mel values are floored at ``max - 8`` (80 dB below the clip's loudest bin)."""


@lru_cache(maxsize=4)
def _hann_window(device: torch.device) -> torch.Tensor:
    """Periodic Hann window of :data:`N_FFT` samples (float32, read only by convention)."""
    return torch.hann_window(N_FFT, device=device)


@lru_cache(maxsize=4)
def _mel_basis(device: torch.device, n_mels: int) -> torch.Tensor:
    """Slaney mel basis ``(n_mels, 201)`` float32, bit-identical to ``librosa.filters.mel``."""
    return torch.tensor(mel_filters(S3_SR, N_FFT, n_mels), device=device)


def mel_frame_count(n_samples: int) -> int:
    """Number of log-mel frames :func:`log_mel_spectrogram` makes from ``n_samples`` samples at 16 kHz."""
    return n_samples // HOP_SAMPLES


def log_mel_spectrogram(wav16: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """Log-mel spectrogram of one clip, exactly as upstream's ``S3Tokenizer.log_mel_spectrogram``.

    ``wav16`` is a 1-D float32 tensor of ``n`` samples at 16 kHz (``n > 200``).  Returns a float32 tensor
    of shape ``(n_mels, n // 160)`` on the same device: centred STFT (400-sample periodic Hann window,
    hop 160, reflect padding) without its last frame, power ``|X|**2``, Slaney mel (fmax 8 kHz),
    ``log10`` of the power clamped at 1e-10, floored at the clip's maximum minus 8, then ``(x + 4) / 4``.
    """
    if wav16.dim() != 1:
        raise ValueError(f"log_mel_spectrogram expects a 1-D waveform, got shape {tuple(wav16.shape)}")
    if wav16.numel() <= N_FFT // 2:
        raise ValueError(
            f"waveform too short for the speech tokenizer: {wav16.numel()} samples at 16 kHz, "
            f"need more than {N_FFT // 2}"
        )
    if not wav16.is_floating_point():
        raise ValueError(f"log_mel_spectrogram expects float samples in [-1, 1], got dtype {wav16.dtype}")
    wav16 = wav16.to(torch.float32)
    spec = torch.stft(
        wav16,
        N_FFT,
        HOP_SAMPLES,
        window=_hann_window(wav16.device),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    # upstream squares the magnitude (sqrt then square), which rounds differently from re**2 + im**2
    power = spec[:, :-1].abs() ** 2
    mel = _mel_basis(wav16.device, n_mels) @ power
    log_spec = torch.clamp(mel, min=LOG_FLOOR).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE_LOG10)
    return (log_spec + 4.0) / 4.0


def log_mel_batch(
    wavs: Sequence[torch.Tensor], max_frames: int | None = None, n_mels: int = N_MELS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mels of several 16 kHz clips, zero-padded into one batch.

    Each clip's log-mel is computed on its own (the ``max - 8`` floor is per clip) and then cut to
    ``max_frames`` frames when given.  Returns ``(mels, lengths)``: mels ``(B, n_mels, T_max)`` float32,
    lengths ``(B,)`` int64 (frames of each clip).
    """
    mels = [log_mel_spectrogram(w, n_mels) for w in wavs]
    if max_frames is not None:
        mels = [m[:, :max_frames] for m in mels]
    lengths = torch.tensor([m.shape[1] for m in mels], dtype=torch.int64)
    t_max = int(lengths.max())
    device = mels[0].device
    batch = torch.zeros(len(mels), n_mels, t_max, dtype=torch.float32, device=device)
    for i, m in enumerate(mels):
        batch[i, :, : m.shape[1]] = m
    return batch, lengths


__all__ = ["DYNAMIC_RANGE_LOG10", "HOP_SAMPLES", "LOG_FLOOR", "N_FFT", "N_MELS", "log_mel_batch", "log_mel_spectrogram",
           "mel_frame_count"]
