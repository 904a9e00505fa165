"""The store: the voice library's SQLite catalogue and content-addressed files (no torch, no models)."""

from __future__ import annotations

from .catalogue import CATALOGUE_NAME, Catalogue, schema_version
from .records import STORAGE_MODES, NewVoice, StorageMode, StoredFile, StoredVoice, VoiceInfo
from .store import AUDIO_SUFFIX, VOICE_SUFFIX, VoiceStore

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
