"""Deprecated: ``voicebank.weights`` moved to ``voicebank.models.weights``; this alias goes in the next release."""

from __future__ import annotations

import warnings

from .models.weights import *  # noqa: F403
from .models.weights import __all__  # noqa: F401

warnings.warn("voicebank.weights is deprecated: import from voicebank.models.weights instead",
              DeprecationWarning, stacklevel=2)
