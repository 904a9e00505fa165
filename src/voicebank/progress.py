"""The progress callback every long operation takes (the engine, the library, the batch runner)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int], None]
"""Called with the number of items (clips, voices, rows) just finished: for progress bars."""

__all__ = ["Progress"]
