"""A reference clip made ready for conditioning, per Chatterbox variant.

Upstream loads the clip at 24 kHz, optionally loudness-normalises it (Turbo), resamples the *whole*
clip to 16 kHz, and then cuts the windows each model uses.  :func:`prepare_reference` does those steps
once so every model reads the same arrays.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..chatterbox import S3_SR, S3GEN_SR, TURBO_MIN_SECONDS, Variant
from ..errors import AudioTooShortError, MissingDependencyError
from ..options import check_variant
from .clip import Clip, array_sha256
from .decode import AudioSource, Waveform, resample

log = logging.getLogger(__name__)

TURBO_TARGET_LUFS = -27.0
"""Turbo normalises the reference to this integrated loudness before anything else."""


@dataclass(frozen=True)
class Reference:
    """A decoded reference clip.

    ``wav24``: (n24,) float32 @ 24 kHz, the full clip (loudness-normalised for Turbo);
    ``wav16``: (n16,) float32 @ 16 kHz, soxr-resampled from ``wav24``;
    ``source_sha256``: sha256 of the source file's bytes (of the decoded samples for in-memory input);
    ``source_sample_rate`` / ``source_channels``: what the source had before decoding;
    ``name``: how the source is called in messages.
    """

    wav24: np.ndarray
    wav16: np.ndarray
    source_sha256: str
    source_sample_rate: int
    source_channels: int
    name: str
    loudness_gain_db: float | None = field(default=None)

    @property
    def duration(self) -> float:
        """Length of the clip in seconds."""
        return self.wav24.shape[0] / S3GEN_SR


def source_sha256(source: AudioSource) -> str:
    """sha256 of a file source's bytes, or of the float32 samples and rate of an in-memory one.

    Prefer :meth:`Clip.read <voicebank.audio.Clip.read>`, which hashes while it decodes (one read).
    """
    if isinstance(source, (Waveform, tuple)):
        samples, sr = (source.samples, source.sample_rate) if isinstance(source, Waveform) else source
        return array_sha256(samples, int(sr))
    h = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    elif isinstance(source, (bytes, bytearray)):
        h.update(source)
    else:  # a file object: hash what is left from its current position, then rewind
        pos = source.tell() if hasattr(source, "tell") else None
        for block in iter(lambda: source.read(1 << 20), b""):
            h.update(block)
        if pos is not None and hasattr(source, "seek"):
            source.seek(pos)
    return h.hexdigest()


def normalise_loudness(wav24: np.ndarray, target_lufs: float = TURBO_TARGET_LUFS) -> tuple[np.ndarray, float | None]:
    """Scale ``wav24`` (float32 @ 24 kHz) to ``target_lufs`` integrated loudness (pyloudnorm, BS.1770).

    Returns the scaled clip and the gain in dB, or the clip unchanged and ``None`` when the loudness is
    not measurable (as upstream Turbo does).
    """
    try:
        import pyloudnorm
    except ImportError as e:  # pragma: no cover - a core dependency
        raise MissingDependencyError("Turbo loudness normalisation needs pyloudnorm: pip install pyloudnorm") from e
    try:
        loudness = pyloudnorm.Meter(S3GEN_SR).integrated_loudness(wav24)
    except ValueError as e:
        log.warning("loudness normalisation skipped: %s", e)
        return wav24, None
    gain_db = target_lufs - loudness
    gain = 10.0 ** (gain_db / 20.0)
    if not (math.isfinite(gain) and gain > 0.0):
        return wav24, None
    # numpy < 2 (upstream's) multiplies a float32 array by a float64 scalar in float32
    return (wav24 * np.float32(gain)).astype(np.float32, copy=False), float(gain_db)


def prepare_reference(source: AudioSource | Clip, variant: Variant = "english") -> Reference:
    """The 24 kHz and 16 kHz signals ``variant`` conditions on, from a :class:`Clip` (or any source, read once).

    Raises :class:`~voicebank.errors.AudioError` subclasses for unusable audio, and
    :class:`~voicebank.errors.AudioTooShortError` for Turbo references of 5 s or less.
    """
    variant = check_variant(variant)
    clip = Clip.read(source)
    name = clip.name
    wav24 = resample(clip.samples, clip.sample_rate, S3GEN_SR)
    gain_db = None
    if variant == "turbo":
        seconds = wav24.shape[0] / S3GEN_SR
        if not seconds > TURBO_MIN_SECONDS:
            raise AudioTooShortError(
                f"{name}: {seconds:.2f} s is too short for Chatterbox Turbo, which needs more than "
                f"{TURBO_MIN_SECONDS:.0f} s of reference audio; use a longer clip or another variant",
                source=name)
        wav24, gain_db = normalise_loudness(wav24)
    wav16 = resample(wav24, S3GEN_SR, S3_SR) if variant != "vc" else np.zeros(0, dtype=np.float32)
    return Reference(wav24=wav24, wav16=wav16, source_sha256=clip.sha256, source_sample_rate=clip.sample_rate,
                     source_channels=clip.channels, name=name, loudness_gain_db=gain_db)
