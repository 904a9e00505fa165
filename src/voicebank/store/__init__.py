"""The store: the voice library's SQLite catalogue and content-addressed files (no torch, no models)."""

from __future__ import annotations

from .catalogue import CATALOGUE_NAME, Catalogue, schema_version
from .records import STORAGE_MODES, StorageMode, StoredFile, VoiceInfo
from .store import AUDIO_SUFFIX, VOICE_SUFFIX, NewVoice, StoredVoice, VoiceStore

__all__ = [
           "AUDIO_SUFFIX",
           "CATALOGUE_NAME",
           "STORAGE_MODES",
           "VOICE_SUFFIX",
           "Catalogue",
           "NewVoice",
           "StorageMode",
           "StoredFile",
           "StoredVoice",
           "VoiceInfo",
           "VoiceStore",
           "schema_version",
]
