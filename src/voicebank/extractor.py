"""Deprecated: ``voicebank.extractor`` moved to ``voicebank.engine``; this alias goes in the next release."""

from __future__ import annotations

import warnings

from .engine.extractor import *  # noqa: F403
from .engine.extractor import __all__  # noqa: F401

warnings.warn("voicebank.extractor is deprecated: import from voicebank.engine instead",
              DeprecationWarning, stacklevel=2)
