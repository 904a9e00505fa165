"""Chatterbox's facts: the variants, sample rates, sizes and limits that voicebank reproduces.

Pure data, no dependencies: every layer (audio front end, models, voice files, store, shells) reads these
from here and declares none of them itself.  The values are upstream's (chatterbox-tts 0.1.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Variant = Literal["english", "multilingual", "turbo", "vc"]
VARIANTS: tuple[Variant, ...] = ("english", "multilingual", "turbo", "vc")
"""The four Chatterbox models whose conditionals voicebank computes."""

S3GEN_SR = 24_000
"""Sample rate of the S3Gen reference (and of ``librosa.load`` in upstream), Hz."""
S3_SR = 16_000
"""Sample rate of the speech tokenizer and the voice encoder, Hz."""

SPEAKER_EMB_DIM = 256
"""Size of the voice encoder's speaker embedding (``t3.speaker_emb``)."""
XVECTOR_DIM = 192
"""Size of the CAM++ x-vector (``gen.embedding``)."""
SPEECH_VOCAB_SIZE = 6561
"""Distinct S3 speech tokens (``3**8``): every token is in ``[0, 6561)``."""
N_MELS_S3GEN = 80
"""Mel bands of S3Gen's ``prompt_feat`` (24 kHz, 50 frames/s)."""

DEFAULT_EXAGGERATION = 0.5
"""Chatterbox's default emotion exaggeration (``t3.emotion_adv``)."""
EXAGGERATION_MIN, EXAGGERATION_MAX = 0.0, 2.0
EXAGGERATION_RANGE = (EXAGGERATION_MIN, EXAGGERATION_MAX)
"""Exaggerations accepted: Chatterbox's useful range (its demos offer 0.25-2)."""

GEN_REFERENCE_SECONDS = 10
"""S3Gen conditions on the first 10 s of the 24 kHz reference (``DEC_COND_LEN``)."""
TURBO_MIN_SECONDS = 5.0
"""Chatterbox Turbo refuses references of 5 s or less."""
MAX_PROMPT_FEAT_FRAMES = 3000
"""Most ``gen.prompt_feat`` frames a voice file may hold: upstream makes at most 500 (10 s at 50 frames/s);
60 s is absurd."""


@dataclass(frozen=True)
class VariantSpec:
    """What differs between Chatterbox variants when preparing conditionals."""

    t3_prompt_seconds: int | None
    """Seconds of 16 kHz audio T3's prompt tokens come from (``ENC_COND_LEN``); ``None``: no T3 part."""
    t3_prompt_tokens: int
    """``speech_cond_prompt_len``: at most this many T3 prompt tokens."""


VARIANT_SPECS: dict[Variant, VariantSpec] = {
    "english": VariantSpec(6, 150),
    "multilingual": VariantSpec(6, 150),
    "turbo": VariantSpec(15, 375),
    "vc": VariantSpec(None, 0),
}

MAX_T3_PROMPT_TOKENS = max(spec.t3_prompt_tokens for spec in VARIANT_SPECS.values())
"""Most T3 prompt tokens of any variant (Turbo's 375)."""


__all__ = [
    "DEFAULT_EXAGGERATION", "EXAGGERATION_MAX", "EXAGGERATION_MIN", "EXAGGERATION_RANGE", "GEN_REFERENCE_SECONDS",
    "MAX_PROMPT_FEAT_FRAMES",
    "MAX_T3_PROMPT_TOKENS", "N_MELS_S3GEN", "S3GEN_SR", "S3_SR", "SPEAKER_EMB_DIM", "SPEECH_VOCAB_SIZE",
    "TURBO_MIN_SECONDS", "VARIANTS", "VARIANT_SPECS", "XVECTOR_DIM", "Variant", "VariantSpec",
]
