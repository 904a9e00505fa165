"""Turning what the file system and SQLite say into the store's typed errors, and checking rows before use.

Every failure of the catalogue or the content files ends here as one of three errors whose message says
what to do: :class:`~voicebank.errors.CatalogueDamagedError` (the catalogue cannot be trusted: nothing is
deleted, ``voicebank library check`` explains), :class:`~voicebank.errors.LibraryWriteError` (read-only,
full, a stray file or directory) and :class:`~voicebank.errors.CatalogueError` (locked, newer schema).
"""

from __future__ import annotations

import difflib
import errno
import json
import math
import os
import sqlite3
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..chatterbox import VARIANTS
from ..errors import CatalogueDamagedError, CatalogueError, LibraryError, LibraryWriteError
from .records import STORAGE_MODES

TABLES = {
    "voices": {"id", "name", "mode", "variant", "exaggeration", "source_sha256", "source_name", "duration",
               "sample_rate", "channels", "loudness_lufs", "speaker_emb", "xvector", "weights_fingerprint", "base_id",
               "origin", "experimental", "provenance", "added_by", "added_at", "consent", "inspection", "norm_mean",
               "norm_std", "norm_cohort", "skeleton"},
    "tags": {"voice_id", "tag"},
    "blobs": {"sha256", "kind", "suffix", "size", "created_at"},
    "voice_files": {"voice_id", "role", "variant", "blob", "weights_fingerprint"},
    "cohorts": {"id", "fingerprint", "library_size", "vectors", "exclude_above", "top_k", "created_at"},
    "vector_log": {"seq", "voice_id"},
}


def damaged(path: Path, detail: str) -> CatalogueDamagedError:
    return CatalogueDamagedError(f"the library catalogue at {path} is damaged: {detail}; run voicebank library "
                                 "check (nothing was changed)")


def read_only(root: Path, detail: str = "") -> LibraryWriteError:
    why = f" ({detail})" if detail else ""
    return LibraryWriteError(f"the library at {root} is read-only{why}: nothing was changed; make it writable or "
                             "pass another directory with --library")


def dir_writable(directory: Path) -> bool:
    """Whether files can be created in ``directory`` (permissions and a read-only mount)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        return not os.statvfs(directory).f_flag & os.ST_RDONLY
    except (AttributeError, OSError):
        return True


def _full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize < 64 * 1024
    except (AttributeError, OSError):
        return False


def sqlite_error(e: sqlite3.Error, path: Path, *, timeout: float = 0.0) -> LibraryError:
    """The typed error for what SQLite said about the catalogue at ``path``."""
    name = str(getattr(e, "sqlite_errorname", "") or "")
    text = str(e)
    low = text.lower()
    root = path.parent
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in low or "busy" in low:
        return CatalogueError(f"{path}: the catalogue stayed locked for {timeout:.0f} s ({text}); another process "
                              "holds it: try again when it is done")
    if name.startswith("SQLITE_READONLY") or "readonly" in low or "read-only" in low:
        return read_only(root, text)
    if name.startswith("SQLITE_FULL") or "full" in low:
        return LibraryWriteError(f"the library at {root}: the file system is full ({text}); nothing was changed")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM", "SQLITE_AUTH")) or "unable to open" in low \
            or "disk i/o" in low:
        if not dir_writable(root) or (path.exists() and not os.access(path, os.W_OK)):
            return read_only(root, text)
        if path.exists() and not path.is_file():
            return damaged(path, "it is not a regular file")
        if _full(root):
            return LibraryWriteError(f"the library at {root}: the file system is full ({text}); nothing was changed")
        return LibraryWriteError(f"the library at {root}: cannot use its catalogue ({text}); check the directory's "
                                 "permissions and free space")
    return damaged(path, text)


def os_error(e: OSError, root: Path, action: str = "write to") -> LibraryError:
    """The typed error for a file-system failure while ``action``-ing the library at ``root``."""
    if isinstance(e, LibraryError):
        return e
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    code = cause.errno
    where = f" ({cause.filename})" if cause.filename else ""
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return read_only(root, f"{cause.strerror or cause}{where}")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return LibraryWriteError(f"the library at {root}: the file system is full{where}; nothing was changed")
    if code in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        return LibraryWriteError(f"the library at {root}: a directory stands where a file belongs, or a file where "
                                 f"a directory belongs{where}; run voicebank library check")
    return LibraryWriteError(f"cannot {action} the library at {root}: {cause.strerror or cause}{where}")


def check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Raise :class:`CatalogueDamagedError` unless the file is whole pages and every table has the columns this
    voicebank uses."""
    try:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        size = path.stat().st_size
        if page > 0 and size % page:
            raise damaged(path, f"it is cut short ({size} bytes is not a whole number of {page}-byte pages)")
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, columns in TABLES.items():
            if table not in have:
                raise damaged(path, f"its {table} table is missing")
            cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if not columns <= cols:
                raise damaged(path, f"its {table} table lacks {', '.join(sorted(columns - cols))}")
    except (sqlite3.DatabaseError, OSError) as e:
        raise damaged(path, str(e)) from e


_CONFUSABLE = str.maketrans({
    # Cyrillic and Greek letters drawn like Latin ones (the common subset of Unicode's confusables list)
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "ı": "i",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X",
    "Ѕ": "S", "І": "I", "Ј": "J", "Ү": "Y",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "υ": "u", "ι": "i", "κ": "k", "χ": "x",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
    "Τ": "T", "Υ": "Y", "Χ": "X",
})


def nfc(name: str) -> str:
    """A voice name as the catalogue keeps it: Unicode NFC (so ``é`` typed either way is one name)."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else name


def name_skeleton(name: str) -> str:
    """What a name looks like: compatibility forms folded (NFKC: full-width letters, ligatures), letters drawn
    alike mapped together (Cyrillic ``а`` and Latin ``a``, Greek ``Ο`` and Latin ``O``).  Two names with one
    skeleton are confusable."""
    return unicodedata.normalize("NFKC", name).translate(_CONFUSABLE)


NEIGHBOURS = 50
"""Names read each side of a missing name (and of its case variants) to suggest close ones."""


def close_names(conn: sqlite3.Connection, name: str, *, n: int = 3) -> list[str]:
    """Up to ``n`` stored names close to ``name`` (a missing one), compared in any case with the
    :data:`NEIGHBOURS` names each side of it and of its lower-case, upper-case and capitalised forms in the name
    index: a few indexed lookups, however many voices there are."""
    near: set[str] = set()
    for form in {name, name.lower(), name.upper(), name.capitalize()}:
        near.update(r[0] for r in conn.execute("SELECT name FROM voices WHERE name < ? ORDER BY name DESC LIMIT ?",
                                               (form, NEIGHBOURS)))
        near.update(r[0] for r in conn.execute("SELECT name FROM voices WHERE name >= ? ORDER BY name LIMIT ?",
                                               (form, NEIGHBOURS)))
    folded: dict[str, str] = {}
    for candidate in sorted(c for c in near if isinstance(c, str)):
        folded.setdefault(candidate.casefold(), candidate)
    return [folded[c] for c in difflib.get_close_matches(name.casefold(), list(folded), n=n)]


def _finite(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x))


def json_object(text: Any) -> dict[str, Any]:
    """A JSON object column, or ``ValueError``."""
    obj = json.loads(text or "{}")
    if not isinstance(obj, Mapping):
        raise ValueError("not a JSON object")
    return dict(obj)


def row_problem(row: sqlite3.Row) -> str | None:
    """What is wrong with a ``voices`` row (``None`` when it can be used)."""
    try:
        name = row["name"]
        if not isinstance(name, str) or not name:
            return "its name is not text"
        if row["mode"] not in STORAGE_MODES:
            return f"unknown storage mode {str(row['mode'])[:40]!r}"
        if row["variant"] not in VARIANTS:
            return f"unknown variant {str(row['variant'])[:40]!r}"
        for col in ("exaggeration", "duration", "loudness_lufs"):
            if not _finite(row[col]):
                return f"its {col} is not a finite number"
        for col in ("sample_rate", "channels"):
            v = row[col]
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= 10_000_000):
                return f"its {col} {str(v)[:20]!r} is not a sane whole number"
        for col in ("provenance", "inspection"):
            try:
                json_object(row[col])
            except (ValueError, TypeError):
                return f"its {col} is not valid JSON"
        for col in ("source_name", "weights_fingerprint", "origin", "added_by", "added_at", "consent"):
            if row[col] is not None and not isinstance(row[col], str):
                return f"its {col} is not text"
    except (IndexError, KeyError) as e:
        return f"a column is missing ({e})"
    return None


__all__ = ["check_schema", "damaged", "dir_writable", "json_object", "name_skeleton", "nfc", "os_error", "read_only",
           "row_problem", "sqlite_error"]
