"""Voices: Chatterbox conditionals (:class:`Voice`) and their two file formats (voicebank ``.safetensors``,
upstream ``.pt``)."""

from __future__ import annotations

from .voice import FORMAT_VERSION, GenConditioning, T3Conditioning, Voice, VoiceMetadata

__all__ = ["FORMAT_VERSION", "GenConditioning", "T3Conditioning", "Voice", "VoiceMetadata"]
