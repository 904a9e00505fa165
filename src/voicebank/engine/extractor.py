""":class:`Extractor`: one variant's view of an :class:`~voicebank.engine.Engine` (the original API).

``Extractor(weights, variant="turbo")`` is the process's engine for those weights
(:func:`~voicebank.engine.shared_engine`) with the variant fixed, so several extractors, variants and libraries
cost one copy of each model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..audio.clip import Clip
from ..audio.decode import AudioSource
from ..audio.reference import Reference
from ..chatterbox import DEFAULT_EXAGGERATION, GEN_REFERENCE_SECONDS, VARIANT_SPECS, Variant, VariantSpec
from ..models.checkpoints import WeightFiles
from ..options import check_variant
from ..progress import Progress
from .engine import PRECISIONS, Engine, Precision
from .registry import shared_engine

if TYPE_CHECKING:
    import torch

    from ..models.campplus import CAMPPlus
    from ..models.speech_tokenizer import SpeechTokenizer
    from ..models.voice_encoder import VoiceEncoder
    from ..voice.voice import Voice


class Extractor:
    """Computes Chatterbox voice conditionals for one variant.

    Build it with :meth:`from_local` (a directory of checkpoints, or a single voice-encoder file for
    embeddings only) or :meth:`from_pretrained` (the Hugging Face cache, downloading only if allowed), or
    over a shared engine with ``Extractor(engine=engine, variant=...)``.  Models load lazily:
    :meth:`embed` loads just the 5.7 MB voice encoder.  See :class:`~voicebank.engine.Engine` for
    ``precision`` and ``threads``.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, *, variant: Variant = "english",
                 device: str | torch.device = "cpu", allow_download: bool = False,
                 precision: Precision = "exact", threads: int | None = None, engine: Engine | None = None) -> None:
        self.variant: Variant = check_variant(variant)
        if engine is None:
            engine = shared_engine(weights, device=device, precision=precision, threads=threads,
                                   allow_download=allow_download)
        self.engine = engine

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def precision(self) -> Precision:
        return self.engine.precision

    @classmethod
    def from_local(cls, weights: str | os.PathLike[str], *, variant: Variant = "english",
                   device: str | torch.device = "cpu", precision: Precision = "exact") -> Extractor:
        """Use the checkpoints in ``weights`` (a directory, or a voice-encoder file for embeddings only)."""
        return cls(weights, variant=variant, device=device, precision=precision)

    @classmethod
    def from_pretrained(cls, variant: Variant = "english", *, device: str | torch.device = "cpu",
                        allow_download: bool = False, precision: Precision = "exact") -> Extractor:
        """Use ``$VOICEBANK_WEIGHTS`` or the Hugging Face cache; download only when ``allow_download``."""
        return cls(None, variant=variant, device=device, allow_download=allow_download, precision=precision)

    def __repr__(self) -> str:
        return f"Extractor(variant={self.variant!r}, engine={self.engine!r})"

    # --- weights and models --------------------------------------------------------------------------

    def weight_files(self, *, need_s3gen: bool = True) -> WeightFiles:
        """Locate the checkpoints (cached).  Raises :class:`~voicebank.errors.WeightsNotFoundError`."""
        return self.engine.weight_files(self.variant, need_s3gen=need_s3gen)

    @property
    def voice_encoder(self) -> VoiceEncoder:
        """The voice encoder, loaded on first use."""
        return self.engine.voice_encoder(self.variant)

    @property
    def speech_tokenizer(self) -> SpeechTokenizer:
        """The S3 speech tokenizer, loaded on first use."""
        return self.engine.speech_tokenizer(self.variant)

    @property
    def speaker_encoder(self) -> CAMPPlus:
        """The CAM++ x-vector model, loaded on first use."""
        return self.engine.speaker_encoder(self.variant)

    def load(self) -> Extractor:
        """Load every model this variant needs now rather than on first use.  Returns ``self``."""
        self.engine.load([self.variant])
        return self

    @property
    def weights_fingerprint(self) -> str:
        """A short fingerprint of the weights this variant's conditionals come from (no model is built)."""
        return self.engine.weights_fingerprint(self.variant)

    # --- computing ------------------------------------------------------------------------------------

    def reference(self, source: AudioSource | Clip) -> Reference:
        """Read ``source`` once and prepare it for this variant."""
        return self.engine.reference(source, self.variant)

    def embed(self, sources: Sequence[AudioSource | Clip], *, progress: Progress | None = None) -> np.ndarray:
        """Speaker embeddings ``(len(sources), 256)`` float32 (see :meth:`Engine.embed`)."""
        return self.engine.embed(sources, variant=self.variant, progress=progress)

    def embeddings_of(self, ref: Reference | AudioSource | Clip) -> tuple[np.ndarray, np.ndarray | None]:
        """``(speaker_emb (256,), xvector (192,))`` without the speech tokenizer (see :meth:`Engine.embeddings`)."""
        return self.engine.embeddings(ref, self.variant)

    def extract(self, source: AudioSource | Clip, *, exaggeration: float = DEFAULT_EXAGGERATION) -> Voice:
        """Chatterbox conditionals of one reference clip (see :meth:`Engine.extract`)."""
        return self.engine.extract(source, self.variant, exaggeration=exaggeration)

    def extract_many(self, sources: Sequence[AudioSource | Clip], *, exaggeration: float = DEFAULT_EXAGGERATION,
                     progress: Progress | None = None, batch_size: int = 8) -> list[Voice]:
        """Conditionals of several clips, batched (see :meth:`Engine.extract_many`)."""
        return self.engine.extract_many(sources, self.variant, exaggeration=exaggeration, progress=progress,
                                        batch_size=batch_size)

    def conditionals_of(self, refs: Sequence[Reference], *,
                        exaggeration: float = DEFAULT_EXAGGERATION) -> list[Voice]:
        """Conditionals of prepared references, batched (see :meth:`Engine.conditionals`)."""
        return self.engine.conditionals(refs, self.variant, exaggeration=exaggeration)


def speaker_embedding(source: AudioSource, *, weights: str | os.PathLike[str] | None = None,
                      device: str | torch.device = "cpu") -> np.ndarray:
    """The (256,) float32 speaker embedding of one clip (``t3.speaker_emb`` of Chatterbox English).

    ``weights``: a directory with ``ve.safetensors``, a voice-encoder file, or ``None`` for
    ``$VOICEBANK_WEIGHTS`` / the Hugging Face cache.
    """
    return shared_engine(weights, device=device).embed([source])[0]


def extract_speaker_embedding(source: AudioSource, device: str | torch.device = "cpu", *,
                              weights: str | os.PathLike[str] | None = None, variant: Variant = "english",
                              exaggeration: float = DEFAULT_EXAGGERATION) -> tuple[np.ndarray, Voice]:
    """The seed document's one-call helper: ``(embedding (256,) float32, conditionals)`` of one clip."""
    voice = shared_engine(weights, device=device).extract(source, variant, exaggeration=exaggeration)
    return voice.speaker_embedding.cpu().numpy(), voice


__all__ = [
    "DEFAULT_EXAGGERATION",
    "GEN_REFERENCE_SECONDS",
    "PRECISIONS",
    "VARIANT_SPECS",
    "Engine",
    "Extractor",
    "VariantSpec",
    "extract_speaker_embedding",
    "speaker_embedding",
]
