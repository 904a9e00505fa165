"""Voices: Chatterbox conditionals (:class:`Voice`, :mod:`.voice`), what their tensors must be
(:mod:`.validation`) and their two file formats (:mod:`.files`: voicebank ``.safetensors``, upstream ``.pt``)."""

from __future__ import annotations

from .files import FORMAT_VERSION, voice_file_format
from .voice import GenConditioning, T3Conditioning, Voice, VoiceMetadata

__all__ = ["FORMAT_VERSION", "GenConditioning", "T3Conditioning", "Voice", "VoiceMetadata", "voice_file_format"]
