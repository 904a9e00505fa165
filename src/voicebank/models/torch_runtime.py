"""Whether torch is here (and wanted), and importing it with a one-line error when it is not.

The voice encoder runs in numpy (:mod:`.voice_encoder_numpy`), so speaker embeddings never need torch; the
speech tokenizer, CAM++ and voice files do.  Code that needs torch asks :func:`require_torch` first, so a
torch-free install (docs/install.md) answers with :class:`~voicebank.errors.MissingDependencyError` saying what
to install, never an ``ImportError`` traceback.

``VOICEBANK_TORCH=0`` makes an install with torch behave as one without: embedding work then never imports
it (no x-vectors), and what needs torch fails with the same message.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

from ..errors import MissingDependencyError
from ..settings import ENV_TORCH, torch_refused

INSTALL_TORCH = "pip install torch (CPU-only machines: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
"""What to run to get torch (the message of :func:`require_torch`)."""


def _refused() -> bool:
    return torch_refused()


@cache
def _findable() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError, AttributeError):  # e.g. sys.modules["torch"] = None
        return False


def torch_installed() -> bool:
    """Whether torch can be imported here and is not refused by ``VOICEBANK_TORCH=0`` (never imports it)."""
    if _refused():
        return False
    return sys.modules.get("torch") is not None or _findable()


def require_torch(what: str) -> ModuleType:
    """``import torch``, or :class:`~voicebank.errors.MissingDependencyError`: "``what`` needs torch: install it".

    ``what``: the work that needs it, e.g. ``"the speech tokenizer"``.
    """
    if _refused():
        raise MissingDependencyError(f"{what} needs torch, which {ENV_TORCH}=0 turns off: unset it")
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError(f"{what} needs torch, which is not installed: {INSTALL_TORCH}") from e
    return torch


__all__ = ["ENV_TORCH", "INSTALL_TORCH", "require_torch", "torch_installed"]
