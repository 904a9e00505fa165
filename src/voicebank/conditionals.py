"""Deprecated: ``voicebank.conditionals`` moved to ``voicebank.voice``; this alias goes in the next release."""

from __future__ import annotations

import warnings

from .voice.voice import *  # noqa: F403
from .voice.voice import __all__  # noqa: F401

warnings.warn("voicebank.conditionals is deprecated: import from voicebank.voice instead",
              DeprecationWarning, stacklevel=2)
