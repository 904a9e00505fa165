"""The engine: the models for one set of weights (:class:`Engine`) and its per-variant view (:class:`Extractor`)."""

from __future__ import annotations

from .engine import PRECISIONS, Engine, Precision, Progress
from .extractor import Extractor, extract_speaker_embedding, speaker_embedding

__all__ = ["PRECISIONS", "Engine", "Extractor", "Precision", "Progress", "extract_speaker_embedding",
           "speaker_embedding"]
