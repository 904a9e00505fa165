"""The engine: the models for one set of weights (:class:`Engine`) and its per-variant view (:class:`Extractor`)."""

from __future__ import annotations

from .engine import PRECISIONS, Engine, Precision
from .extractor import Extractor, extract_speaker_embedding, speaker_embedding
from .registry import shared_engine, shared_engines

__all__ = ["PRECISIONS", "Engine", "Extractor", "Precision", "extract_speaker_embedding",
           "shared_engine", "shared_engines", "speaker_embedding"]
