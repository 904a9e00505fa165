"""Is this clip a good voice reference?  Measurements and findings, before anything is stored.

:func:`inspect_reference` decodes a clip once and measures what makes a reference good or poor:
duration (against Chatterbox Turbo's more-than-5-s rule and the 10 s that S3Gen conditions on),
channels, sample rate, peak and clipping, integrated loudness (ITU-R BS.1770, :mod:`.loudness`),
leading and trailing silence, and a frame-energy estimate of the signal-to-noise ratio.

Each observation is a :class:`Finding` of one of three levels:

* ``error``: the clip is unusable (silent, too short, NaN, too short for a requested variant).  The
  library always refuses it.
* ``warning``: the clip is usable but poor (clipped, noisy, very quiet, mostly silence, narrow-band).
  The library refuses it unless told to add it anyway (``force=True``, ``--force``).
* ``info``: worth knowing, never a reason to refuse (stereo mixed to mono, only the first 10 s used).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..chatterbox import GEN_REFERENCE_SECONDS, TURBO_MIN_SECONDS
from .clip import Clip
from .decode import MAX_PEAK, MAX_SECONDS, MIN_SECONDS, SILENCE_PEAK, AudioSource, describe, read_audio

Level = Literal["info", "warning", "error"]

T3_PROMPT_SECONDS = 6.0
"""T3's prompt tokens come from the first 6 s (15 s for Turbo)."""
SHORT_SECONDS = 2.0
"""Below this a reference is poor: the speaker embedding averages too few partials."""
CLIP_LEVEL = 0.999
"""Samples at or above this absolute value count as clipped."""
MAX_CLIPPED_FRACTION = 0.001
"""More than 0.1 % clipped samples is audible distortion."""
QUIET_LUFS = -45.0
"""Integrated loudness below this is a very quiet recording."""
SILENT_LUFS = -70.0
"""Integrated loudness below this (BS.1770's absolute gate) holds no usable signal."""
MIN_SNR_DB = 15.0
"""An estimated SNR below this is a noisy reference."""
MIN_SAMPLE_RATE = 16_000
"""Below 16 kHz the models see less bandwidth than they were trained on."""
MAX_EDGE_SILENCE_SECONDS = 2.0
"""More leading (or trailing) silence than this wastes the window the models condition on."""
MIN_ACTIVE_SECONDS = 1.0
"""Less non-silent audio than this is too little speech."""

FRAME_SECONDS = 0.02
HOP_SECONDS = 0.01
SILENCE_FLOOR_DBFS = -60.0
SILENCE_BELOW_LOUD_DB = 40.0
"""A frame is silence when its RMS is below ``max(SILENCE_FLOOR_DBFS, loud level - 40 dB)``."""
SNR_CAP_DB = 100.0


@dataclass(frozen=True)
class Finding:
    """One observation about a reference: ``level``, a stable ``code`` and a human ``message``."""

    level: Level
    code: str
    message: str


@dataclass(frozen=True)
class Inspection:
    """Measurements of one reference clip (mono mix at its own sample rate) and the findings they lead to.

    ``peak`` is linear (1.0 = full scale); ``loudness_lufs`` and ``snr_db`` are ``None`` when they cannot be
    measured (a clip under 0.4 s, or digital silence).  Durations are in seconds.
    """

    source: str
    duration: float
    sample_rate: int
    channels: int
    peak: float
    clipped_fraction: float
    loudness_lufs: float | None
    leading_silence: float
    trailing_silence: float
    snr_db: float | None
    findings: tuple[Finding, ...]

    @property
    def peak_dbfs(self) -> float:
        return 20.0 * math.log10(self.peak) if self.peak > 0 else -math.inf

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "warning")

    @property
    def notes(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "info")

    @property
    def usable(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every measurement (rounded), ``peak_dbfs`` and the findings."""
        out = asdict(self)
        for k in ("duration", "peak", "clipped_fraction", "loudness_lufs", "leading_silence", "trailing_silence",
                  "snr_db"):
            if out[k] is not None:
                out[k] = round(float(out[k]), 6)
        out["peak_dbfs"] = round(self.peak_dbfs, 3) if math.isfinite(self.peak_dbfs) else None
        out["findings"] = [asdict(f) for f in self.findings]
        return out


def _frame_db(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS level in dBFS of 20 ms frames every 10 ms: ``(n,) -> (n_frames,)`` float64."""
    frame = max(1, round(FRAME_SECONDS * sample_rate))
    hop = max(1, round(HOP_SECONDS * sample_rate))
    if wav.shape[0] < frame:
        wav = np.pad(wav, (0, frame - wav.shape[0]))
    n_frames = 1 + (wav.shape[0] - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]
    power = np.mean(np.square(wav[idx].astype(np.float64)), axis=1)
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def _integrated_loudness(wav: np.ndarray, sample_rate: int) -> float | None:
    from .loudness import integrated_loudness

    return integrated_loudness(np.asarray(wav, dtype=np.float64), sample_rate)


def inspect_samples(wav: np.ndarray, sample_rate: int, *, channels: int = 1, source: str = "<array>",
                    variants: Iterable[str] = ("english",)) -> Inspection:
    """Inspect decoded mono audio: ``wav`` (n,) float32 at ``sample_rate`` (``channels`` of the original).

    ``variants``: the Chatterbox variants the clip is meant for (Turbo adds the more-than-5-s rule).
    """
    variants = tuple(variants)
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    n = wav.shape[0]
    duration = n / sample_rate if sample_rate > 0 else 0.0
    findings: list[Finding] = []

    def add(level: Level, code: str, message: str) -> None:
        findings.append(Finding(level, code, message))

    finite = bool(np.isfinite(wav).all()) if n else True
    if n == 0:
        add("error", "empty", "the clip holds no audio samples; record or export it again")
    elif not finite:
        add("error", "non_finite", "the audio holds NaN or infinite samples; re-export it")
    elif float(np.max(np.abs(wav))) > MAX_PEAK:
        finite = False
        add("error", "out_of_range", f"sample values reach {float(np.max(np.abs(wav))):.3g}, far outside [-1, 1]; "
            "normalise the audio and export it again")
    if not finite or n == 0:
        return Inspection(source, duration, sample_rate, channels, 0.0, 0.0, None, 0.0, 0.0, None, tuple(findings))

    peak = float(np.max(np.abs(wav)))
    clipped = float(np.mean(np.abs(wav) >= CLIP_LEVEL))
    loudness = _integrated_loudness(wav, sample_rate)
    levels = _frame_db(wav, sample_rate)
    loud = float(np.percentile(levels, 95))
    threshold = max(SILENCE_FLOOR_DBFS, loud - SILENCE_BELOW_LOUD_DB)
    active = np.nonzero(levels > threshold)[0]
    if active.size:
        leading = min(duration, float(active[0] * HOP_SECONDS))
        trailing = max(0.0, duration - float(active[-1] * HOP_SECONDS + FRAME_SECONDS))
    else:
        leading, trailing = duration, 0.0
    noise = float(np.percentile(levels, 10))
    snr = min(SNR_CAP_DB, loud - noise) if peak > SILENCE_PEAK else None

    # --- refusals: the clip cannot serve as a reference -------------------------------------------------
    silent = peak <= SILENCE_PEAK or (loudness is None and n >= 0.4 * sample_rate) or (
        loudness is not None and loudness < SILENT_LUFS)
    if duration < MIN_SECONDS:
        add("error", "too_short", f"{duration:.2f} s is too short; at least {MIN_SECONDS} s is needed "
            "(3-10 s of clean speech works best)")
    if duration > MAX_SECONDS:
        add("error", "too_long", f"{duration:.1f} s is longer than the {MAX_SECONDS:.0f} s accepted; cut a 5-15 s "
            "excerpt of clean speech")
    if silent:
        add("error", "silent", "the clip is silent (no signal above the loudness gate); there is no voice to "
            "extract: check the recording")
    if "turbo" in variants and not duration > TURBO_MIN_SECONDS:
        add("error", "too_short_for_turbo", f"{duration:.2f} s is too short for Chatterbox Turbo, which needs more "
            f"than {TURBO_MIN_SECONDS:.0f} s; use a longer clip or another variant")

    # --- poor but usable: refused unless forced ---------------------------------------------------------
    if not silent:
        if MIN_SECONDS <= duration < SHORT_SECONDS:
            add("warning", "short", f"only {duration:.2f} s of audio; 3-10 s of clean speech works best")
        if clipped > MAX_CLIPPED_FRACTION:
            add("warning", "clipped", f"{clipped:.2%} of the samples are clipped (at full scale); record at a "
                "lower level")
        if peak > 1.0:
            add("warning", "over_full_scale", f"samples reach {peak:.3f}, beyond full scale [-1, 1]; the models will "
                "hear them clipped: normalise the clip")
        if loudness is not None and loudness < QUIET_LUFS:
            add("warning", "quiet", f"integrated loudness {loudness:.1f} LUFS is very quiet (below "
                f"{QUIET_LUFS:.0f} LUFS); record closer to the microphone or normalise")
        if snr is not None and snr < MIN_SNR_DB:
            add("warning", "noisy", f"estimated SNR {snr:.1f} dB is low (below {MIN_SNR_DB:.0f} dB); use a cleaner "
                "recording")
        if leading > MAX_EDGE_SILENCE_SECONDS:
            add("warning", "leading_silence", f"{leading:.1f} s of silence before the speech; trim it (S3Gen only "
                f"uses the first {GEN_REFERENCE_SECONDS:.0f} s)")
        if trailing > MAX_EDGE_SILENCE_SECONDS:
            add("warning", "trailing_silence", f"{trailing:.1f} s of silence after the speech; trim it")
        if duration - leading - trailing < MIN_ACTIVE_SECONDS and duration >= MIN_SECONDS:
            add("warning", "little_speech", f"only {max(0.0, duration - leading - trailing):.2f} s of the clip is "
                "above the silence threshold; use a clip with more speech")
        if sample_rate < MIN_SAMPLE_RATE:
            add("warning", "low_sample_rate", f"sampled at {sample_rate} Hz, below the {MIN_SAMPLE_RATE} Hz the "
                "models expect; use a wide-band recording")

    # --- notes ------------------------------------------------------------------------------------------
    if channels > 1:
        add("info", "mixed_to_mono", f"{channels} channels are averaged to mono, as Chatterbox does")
    if duration <= TURBO_MIN_SECONDS and "turbo" not in variants and duration >= MIN_SECONDS:
        add("info", "turbo_too_short", f"{duration:.2f} s: too short for Chatterbox Turbo (it needs more than "
            f"{TURBO_MIN_SECONDS:.0f} s)")
    if duration > GEN_REFERENCE_SECONDS:
        add("info", "beyond_gen_window", f"{duration:.1f} s: S3Gen uses only the first "
            f"{GEN_REFERENCE_SECONDS:.0f} s (T3's prompt the first {T3_PROMPT_SECONDS:.0f} s, Turbo's 15 s)")
    return Inspection(source, duration, int(sample_rate), int(channels), peak, clipped, loudness, leading, trailing,
                      snr, tuple(findings))


def inspect_clip(clip: Clip, *, variants: Iterable[str] = ("english",)) -> Inspection:
    """Inspect a decoded :class:`~voicebank.audio.Clip`; see :func:`inspect_samples`."""
    return inspect_samples(clip.samples, clip.sample_rate, channels=clip.channels, source=clip.name,
                           variants=variants)


def inspect_reference(source: AudioSource, *, variants: Iterable[str] = ("english",)) -> Inspection:
    """Decode ``source`` (mono mix at its own rate) and inspect it; see :func:`inspect_samples`.

    Raises an :class:`~voicebank.errors.AudioError` only when the clip cannot be decoded at all (missing,
    unreadable, unsupported, longer than :data:`~voicebank.audio.MAX_SECONDS`); every other problem is a
    finding.
    """
    wav, sample_rate, channels = read_audio(source)
    return inspect_samples(wav, sample_rate, channels=channels, source=describe(source), variants=variants)
