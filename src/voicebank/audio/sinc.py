"""Band-limited (windowed-sinc) resampling, equal to ``torchaudio.transforms.Resample`` with its defaults.

Upstream S3Gen makes the 16 kHz signal for its speaker encoder and speech tokenizer with
``torchaudio.transforms.Resample(24000, 16000)`` (Hann-windowed sinc, ``lowpass_filter_width=6``,
``rolloff=0.99``).  That signal is *not* the soxr one of the rest of the pipeline, so it is reproduced here
without depending on torchaudio.

The filter bank is built with the same float operations in the same order as torchaudio (time offsets made
in float32 and promoted to float64, kernel evaluated in float64 and rounded to float32), so the kernel is
bit-identical and the output matches to float32 rounding.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


def _reduced(orig_sr: int, new_sr: int) -> tuple[int, int]:
    g = math.gcd(orig_sr, new_sr)
    return orig_sr // g, new_sr // g


@lru_cache(maxsize=32)
def _sinc_kernel(orig_sr: int, new_sr: int) -> tuple[torch.Tensor, int]:
    """The polyphase filter bank for ``orig_sr -> new_sr``.

    Returns ``(kernel, width)``: ``kernel`` is float32 of shape ``(new, 1, 2 * width + orig)`` where
    ``orig``/``new`` are the rates divided by their gcd; row ``j`` holds the taps of output phase ``j``.
    The tensor is shared by all callers and must not be modified.
    """
    orig, new = _reduced(orig_sr, new_sr)
    cutoff = min(orig, new) * ROLLOFF  # anti-aliasing: a little below the lower Nyquist
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / cutoff)

    # Input-sample positions (float64) relative to each output phase.  The phase offsets are made as a
    # float32 tensor (integer arange / int), then promoted by the float64 addition: torchaudio does the
    # same, and it changes the last bits of the taps.
    taps = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    phase = torch.arange(0, -new, -1, dtype=torch.float32)[:, None, None] / new
    t = (phase + taps) * cutoff
    t = t.clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)

    window = torch.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones((), dtype=t.dtype), torch.sin(t) / t)
    kernel = (sinc * (window * (cutoff / orig))).to(torch.float32)
    kernel.requires_grad_(False)
    return kernel, width


def resampled_length(n: int, orig_sr: int, new_sr: int) -> int:
    """Number of output samples for ``n`` input samples: ``ceil(n * new_sr / orig_sr)``.

    As in torchaudio, the quotient is rounded to float32 before the ceiling, so for long inputs and
    awkward ratios (44.1 kHz -> 16 kHz) the result can be one sample shorter than the exact ceiling.
    For 24 kHz -> 16 kHz it is exact for any realistic length.
    """
    orig, new = _reduced(orig_sr, new_sr)
    return math.ceil(float(torch.tensor(new * n / orig, dtype=torch.float32)))


def sinc_resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``wav`` from ``orig_sr`` to ``new_sr`` Hz as ``torchaudio.transforms.Resample`` does.

    ``wav`` is a floating-point tensor of shape ``(..., n)`` (float32 for parity with upstream); the result
    has shape ``(..., ceil(n * new_sr / orig_sr))`` and the dtype of the kernel's promotion with ``wav``.
    Equal rates return ``wav`` itself.  The signal is zero-padded at both ends, as torchaudio does.
    """
    if int(orig_sr) != orig_sr or int(new_sr) != new_sr or orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_sr} and {new_sr}")
    if not wav.is_floating_point():
        raise TypeError(f"sinc_resample needs a floating-point waveform, got {wav.dtype}")
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr == new_sr:
        return wav
    orig, _ = _reduced(orig_sr, new_sr)
    kernel, width = _sinc_kernel(orig_sr, new_sr)
    kernel = kernel.to(device=wav.device, dtype=wav.dtype)

    shape = wav.shape
    n = shape[-1]
    flat = wav.reshape(-1, n)
    padded = torch.nn.functional.pad(flat, (width, width + orig))
    # (batch, new, frames) -> interleave the phases -> (batch, frames * new)
    out = torch.nn.functional.conv1d(padded[:, None], kernel, stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    out = out[..., : resampled_length(n, orig_sr, new_sr)]
    return out.reshape(*shape[:-1], out.shape[-1])
