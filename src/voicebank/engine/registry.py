"""The process's engines: one :class:`~voicebank.engine.Engine` per (weights, device, precision, threads).

Everything that needs models in a process -- a CLI command, the service, a batch worker, a
:class:`~voicebank.library.Library` without an engine of its own, :func:`voicebank.get` -- asks
:func:`shared_engine` for one, so the same weights are never loaded twice in a process however many
libraries, extractors or transforms use them.  An engine is cheap until it computes (models load on first
need), so asking costs nothing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..settings import Settings
    from .engine import Engine, Precision

EngineKey = tuple[str | None, str, str, int | None, bool, "Settings"]
"""(weights path, device, precision, threads, allow_download, settings snapshot)."""

_ENGINES: dict[EngineKey, Engine] = {}
_LOCK = threading.Lock()


def shared_engine(weights: str | os.PathLike[str] | None = None, *, device: str | torch.device = "cpu",
                  precision: Precision = "exact", threads: int | None = None, allow_download: bool = False,
                  settings: Settings | None = None) -> Engine:
    """This process's engine for these weights and options, built on first request (no model loads until one
    is needed).

    ``weights=None`` means what :class:`~voicebank.settings.Settings` finds (``$VOICEBANK_WEIGHTS``, then the
    Hugging Face cache) as the environment is now: a changed environment gets its own engine.  ``device`` is
    checked (:func:`~voicebank.engine.check_device`); ``threads`` sets torch's intra-op threads when the
    engine is built (see :class:`~voicebank.engine.Engine`).
    """
    from ..settings import Settings
    from .engine import Engine
    from .runtime import device_name

    snapshot = settings if settings is not None else Settings.from_env()
    where = str(Path(weights).expanduser().resolve()) if weights is not None else None
    key: EngineKey = (where, device_name(device), str(precision), threads, bool(allow_download), snapshot)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = Engine(where, device=device, precision=precision, threads=threads,
                            allow_download=allow_download, settings=snapshot)
            _ENGINES[key] = engine
        return engine


def shared_engines() -> list[Engine]:
    """Every engine this process has built through :func:`shared_engine` (for tests and diagnostics)."""
    with _LOCK:
        return list(_ENGINES.values())


__all__ = ["EngineKey", "shared_engine", "shared_engines"]
