"""voicebank: extract, store, compare and serve Chatterbox voice conditionals without the TTS model.

Importing the package is cheap: the heavy parts (torch, the models) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .audio import Clip, Waveform, load_audio
    from .client import Client
    from .engine import Engine, Extractor, extract_speaker_embedding, speaker_embedding
    from .errors import VoicebankError
    from .library import Library, get
    from .settings import Settings
    from .store import VoiceStore
    from .voice import GenConditioning, T3Conditioning, Voice, VoiceMetadata

_LAZY = {
    "Clip": "audio",
    "Waveform": "audio",
    "load_audio": "audio",
    "Voice": "voice",
    "VoiceMetadata": "voice",
    "T3Conditioning": "voice",
    "GenConditioning": "voice",
    "VoicebankError": "errors",
    "Engine": "engine",
    "Extractor": "engine",
    "extract_speaker_embedding": "engine",
    "speaker_embedding": "engine",
    "Settings": "settings",
    "VoiceStore": "store",
    "Library": "library",
    "get": "library",
    "Client": "client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'voicebank' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Client",
    "Clip",
    "Engine",
    "Extractor",
    "GenConditioning",
    "Library",
    "Settings",
    "T3Conditioning",
    "Voice",
    "VoiceMetadata",
    "VoiceStore",
    "VoicebankError",
    "Waveform",
    "__version__",
    "extract_speaker_embedding",
    "get",
    "load_audio",
    "speaker_embedding",
]
