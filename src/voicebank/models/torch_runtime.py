"""Whether torch is here, and importing it with a one-line error when it is not.

The voice encoder runs in numpy (:mod:`.voice_encoder_numpy`), so speaker embeddings never need torch; the
speech tokenizer, CAM++ and voice files do.  Code that needs torch asks :func:`require_torch` first, so a
torch-free install (see docs/install.md) answers with :class:`~voicebank.errors.MissingDependencyError` saying
what to install, never an ``ImportError`` traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

from ..errors import MissingDependencyError

INSTALL_TORCH = "pip install torch (CPU-only machines: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
"""What to run to get torch (the message of :func:`require_torch`)."""


@cache
def torch_installed() -> bool:
    """Whether torch can be imported here (looked up without importing it)."""
    if "torch" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def require_torch(what: str) -> ModuleType:
    """``import torch``, or :class:`~voicebank.errors.MissingDependencyError`: "``what`` needs torch: install it".

    ``what``: the work that needs it, e.g. ``"the speech tokenizer"``.
    """
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs torch, which is not installed: {INSTALL_TORCH}") from e
    return torch


__all__ = ["INSTALL_TORCH", "require_torch", "torch_installed"]
