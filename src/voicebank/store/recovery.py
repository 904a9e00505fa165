"""Rebuilding a damaged catalogue: setting the damaged file aside (never deleting it) and salvaging what it
still says about the content files (which voice used which file).  The library layer then re-registers the
files: voice files carry their own metadata, kept audio can be re-extracted."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from ..errors import LibraryError
from .catalogue import CATALOGUE_NAME
from .guard import os_error


def set_aside(root: Path) -> Path | None:
    """Rename ``catalogue.sqlite3`` (and its ``-wal`` / ``-shm``) to ``catalogue.sqlite3.damaged-<time>``; returns
    the new path of the main file (``None`` when there was none).  Nothing is deleted."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    main = root / CATALOGUE_NAME
    target = root / f"{CATALOGUE_NAME}.damaged-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = root / f"{CATALOGUE_NAME}.damaged-{stamp}.{n}"
    moved = None
    try:
        for extra in ("-wal", "-shm", ""):
            src = root / (CATALOGUE_NAME + extra)
            if src.exists() or src.is_symlink():
                os.replace(src, Path(str(target) + extra))
                if not extra:
                    moved = target
    except OSError as e:
        raise os_error(e, root, "set aside the catalogue of") from e
    return moved if moved is not None or not main.exists() else None


def salvage(path: Path | None) -> dict[str, tuple[str, str, str]]:
    """``sha256 -> (voice name, role, variant)`` that a damaged catalogue still yields (best effort; ``{}``)."""
    if path is None or not path.is_file():
        return {}
    out: dict[str, tuple[str, str, str]] = {}
    with contextlib.suppress(sqlite3.Error, OSError, LibraryError):
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            for name, role, variant, blob in conn.execute(
                    "SELECT v.name, vf.role, vf.variant, vf.blob FROM voice_files vf JOIN voices v ON v.id = "
                    "vf.voice_id"):
                if all(isinstance(x, str) for x in (name, role, variant, blob)):
                    out[blob] = (name, role, variant)
        finally:
            conn.close()
    return out


__all__ = ["salvage", "set_aside"]
