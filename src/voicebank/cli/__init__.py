"""The ``voicebank`` command line: one module per group of commands.

* :mod:`.app` -- the Typer app, the error boundary and :func:`main`;
* :mod:`.files` -- ``embed``, ``extract``, ``inspect-voice`` (audio and voice files, no library);
* :mod:`.voices` -- ``add``, ``list``, ``show``, ``rm``, ``rename``, ``export``, ``import``;
* :mod:`.similarity` -- ``compare``, ``search``, ``blend``;
* :mod:`.maintenance` -- ``inspect-audio`` and the ``library`` group (``check``, ``stale``, ``reextract``, ``path``);
* :mod:`.service` -- ``serve``, ``keys``, ``pull`` (the HTTP service and its client);
* :mod:`.registry` -- which function answers which command.

:func:`main` registers the commands it needs when it runs; call :func:`register` before using ``app``
directly (for instance with Typer's test runner).
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType

from .app import app, main
from .registry import register

__all__ = ["app", "files", "main", "maintenance", "register", "similarity", "voices"]

_SUBMODULES = ("batch", "common", "files", "maintenance", "service", "similarity", "voices")


def __getattr__(name: str) -> ModuleType:
    """The command modules, imported on first use: the console script imports only the one it runs."""
    if name in _SUBMODULES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
