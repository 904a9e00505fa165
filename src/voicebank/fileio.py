"""Writing files so that they appear whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], object], *, tmp_dir: Path | None = None,
                 prefix: str | None = None, suffix: str = ".tmp") -> None:
    """Create ``path`` atomically: ``write(f)`` fills a temp file, which is fsynced and renamed over ``path``.

    The temp file lives in ``tmp_dir`` (default: beside ``path``; it must be on the same filesystem) and is
    removed if anything fails, so a crash or an error never leaves half a file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tmp_dir) if tmp_dir is not None else path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix if prefix is not None else f".{path.name}.", suffix=suffix,
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
