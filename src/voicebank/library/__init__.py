"""The voice library: named voices in SQLite plus content-addressed files, in three storage modes.

>>> from voicebank.library import Library      # doctest: +SKIP
>>> lib = Library()                             # $VOICEBANK_LIBRARY or the user data directory
>>> lib.add("alice.wav", mode="audio")          # keep the decoded clip; extract on demand
>>> voice = lib.get("alice")                    # ready conditionals (a voicebank.Voice)

See :mod:`voicebank.library.library` for the modes and the consistency rules, and
:mod:`voicebank.library.inspection` for what makes a reference poor or unusable.
"""

from __future__ import annotations

from .inspection import Finding, Inspection, inspect_reference, inspect_samples
from .library import (
    DUPLICATE_THRESHOLD,
    ENV_LIBRARY,
    Library,
    check_name,
    collect_audio,
    default_library_path,
    get,
    open_library,
    resolve_library_path,
)
from .results import (
    MODES,
    AddResult,
    CheckProblem,
    CheckReport,
    Comparison,
    Match,
    Mode,
    ReextractResult,
    StaleVoice,
    StoredFile,
    VoiceInfo,
)

__all__ = [
    "DUPLICATE_THRESHOLD",
    "ENV_LIBRARY",
    "MODES",
    "AddResult",
    "CheckProblem",
    "CheckReport",
    "Comparison",
    "Finding",
    "Inspection",
    "Library",
    "Match",
    "Mode",
    "ReextractResult",
    "StaleVoice",
    "StoredFile",
    "VoiceInfo",
    "check_name",
    "collect_audio",
    "default_library_path",
    "get",
    "inspect_reference",
    "inspect_samples",
    "open_library",
    "resolve_library_path",
]
