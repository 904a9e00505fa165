"""Weights fingerprints remembered across processes, keyed by each checkpoint file's identity on disk.

Fingerprinting an S3Gen checkpoint reads and hashes a window of every tensor (~35 ms, a twentieth of a
cold ``voicebank extract``).  The result only changes when the file does, so it is kept in one small JSON
file under the user cache directory, keyed by the file's absolute path and its ``stat`` identity: device,
inode, size, modification and status-change times in nanoseconds.  Any write to the file changes the
status-change time, which no program can set back, so a changed file is never matched.  As git does for
its index, a file modified in the last few seconds is not remembered (a file system with coarse timestamps
could give the same times to two versions written within one tick).

The cache is best effort: an unreadable, damaged or unwritable cache file is ignored (logged at debug level)
and the fingerprint is computed as without it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "weights-fingerprints.json"
VERSION = 1
MAX_FILES = 64
"""Checkpoint files remembered; the least recently stored are dropped first."""
SETTLE_NS = 3_000_000_000
"""A file modified less than this long ago is not remembered."""


def _identity(path: Path) -> tuple[str, list[int]] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.absolute()), [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _group_key(group: tuple[str, ...] | None) -> str:
    return "*" if group is None else "|".join(group)


class FingerprintCache:
    """The fingerprints of checkpoint files, stored in ``directory / FILE_NAME`` (``None``: no cache)."""

    def __init__(self, directory: Path | None) -> None:
        self.path = None if directory is None else Path(directory) / FILE_NAME

    def _entries(self) -> dict[str, dict]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_bytes())
            if isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("files"), dict):
                return data["files"]
            log.debug("ignoring the fingerprint cache %s: unknown layout", self.path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.debug("ignoring the fingerprint cache %s: %s", self.path, e)
        return {}

    def get(self, path: Path, groups: Sequence[tuple[str, ...] | None]) -> list[str] | None:
        """The remembered fingerprints of ``groups`` of ``path``, or ``None`` unless all are remembered for the
        file as it is now."""
        ident = _identity(path)
        if ident is None or self.path is None:
            return None
        entry = self._entries().get(ident[0])
        if not isinstance(entry, dict) or entry.get("stat") != ident[1]:
            return None
        known = entry.get("fingerprints")
        if not isinstance(known, dict):
            return None
        values = [known.get(_group_key(g)) for g in groups]
        if not all(isinstance(v, str) and len(v) == 16 for v in values):
            return None
        return values  # type: ignore[return-value]

    def put(self, path: Path, groups: Sequence[tuple[str, ...] | None], values: Sequence[str]) -> None:
        """Remember ``values`` (the fingerprints of ``groups`` of ``path`` as it is now)."""
        ident = _identity(path)
        if ident is None or self.path is None or time.time_ns() - ident[1][3] < SETTLE_NS:
            return
        entries = self._entries()
        entry = entries.pop(ident[0], None)
        known = entry.get("fingerprints") if isinstance(entry, dict) and entry.get("stat") == ident[1] else None
        fingerprints = dict(known) if isinstance(known, dict) else {}
        fingerprints.update({_group_key(g): v for g, v in zip(groups, values, strict=True)})
        entries[ident[0]] = {"stat": ident[1], "fingerprints": fingerprints}
        while len(entries) > MAX_FILES:
            entries.pop(next(iter(entries)))
        data = json.dumps({"version": VERSION, "files": entries}, indent=1).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".fingerprints-", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            log.debug("cannot store weights fingerprints in %s: %s", self.path, e)
