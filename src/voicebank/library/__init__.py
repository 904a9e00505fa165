"""The voice library: named voices in SQLite plus content-addressed files, in three storage modes.

>>> from voicebank.library import Library      # doctest: +SKIP
>>> lib = Library()                             # $VOICEBANK_LIBRARY or the user data directory
>>> lib.add("alice.wav", mode="audio")          # keep the decoded clip; extract on demand
>>> voice = lib.get("alice")                    # ready conditionals (a voicebank.Voice)

See :mod:`voicebank.library.library` for the modes, :mod:`voicebank.store` for the consistency rules, and
:mod:`voicebank.audio.inspection` for what makes a reference poor or unusable.
"""

from __future__ import annotations

from ..audio.inspection import Finding, Inspection, inspect_clip, inspect_reference, inspect_samples
from ..settings import ENV_LIBRARY
from ..store.records import STORAGE_MODES, StorageMode, StoredFile, VoiceInfo
from .ingest import AddOptions, Prepared
from .library import (
    Library,
    default_library_path,
    get,
    resolve_library_path,
)
from .names import check_name, collect_audio
from .results import (
    AddResult,
    CheckProblem,
    CheckReport,
    Comparison,
    Match,
    ReextractResult,
    StaleVoice,
)

__all__ = [
    "ENV_LIBRARY",
    "STORAGE_MODES",
    "AddOptions",
    "AddResult",
    "CheckProblem",
    "CheckReport",
    "Comparison",
    "Finding",
    "Inspection",
    "Library",
    "Match",
    "Prepared",
    "ReextractResult",
    "StaleVoice",
    "StorageMode",
    "StoredFile",
    "VoiceInfo",
    "check_name",
    "collect_audio",
    "default_library_path",
    "get",
    "inspect_clip",
    "inspect_reference",
    "inspect_samples",
    "resolve_library_path",
]
