"""voicebank: extract, store, compare and serve Chatterbox voice conditionals without the TTS model.

Importing the package is cheap: the heavy parts (torch, the models) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .audio import Waveform, load_audio
    from .client import Client
    from .conditionals import GenConditioning, T3Conditioning, Voice, VoiceMetadata
    from .errors import VoicebankError
    from .extractor import Extractor, extract_speaker_embedding, speaker_embedding
    from .library import Library, get

_LAZY = {
    "Waveform": "audio",
    "load_audio": "audio",
    "Voice": "conditionals",
    "VoiceMetadata": "conditionals",
    "T3Conditioning": "conditionals",
    "GenConditioning": "conditionals",
    "VoicebankError": "errors",
    "Extractor": "extractor",
    "extract_speaker_embedding": "extractor",
    "speaker_embedding": "extractor",
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
    "Extractor",
    "GenConditioning",
    "Library",
    "T3Conditioning",
    "Voice",
    "VoiceMetadata",
    "VoicebankError",
    "Waveform",
    "__version__",
    "extract_speaker_embedding",
    "get",
    "load_audio",
    "speaker_embedding",
]
