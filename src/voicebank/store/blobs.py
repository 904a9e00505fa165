"""Content-addressed files of the voice library: ``blobs/<ab>/<sha256><suffix>``.

A file's name is the sha256 of its bytes, so the same content is stored once and a damaged file is
recognisable.  Files appear atomically: the bytes go to a temp file under ``tmp/`` (same file system),
are flushed and fsynced, and the temp file is renamed into place; the directory is fsynced too.  A crash
leaves either the whole file or nothing but a temp file, which :meth:`BlobStore.stale_temp_files` finds.

Temp files are named ``<pid>.<random>.tmp`` so a sweeper can tell a live writer's file from an orphan.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ..fileio import atomic_write, fsync_directory

TEMP_SUFFIX = ".tmp"
TEMP_GRACE_SECONDS = 24 * 3600.0
"""A temp file older than this is an orphan even if its writer's pid is in use (pid reuse)."""
_HASH_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The sha256 of a content file, read without following a link (``OSError`` for a link or anything but a
    regular file: a link to an endless device is never read)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        for block in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def read_content(path: Path, size: int) -> bytes:
    """The ``size`` bytes of the content file ``path``, read without following a link and never beyond
    ``size`` + 1 bytes (a file swapped for a link to a device, or for something larger, is refused, never read
    to its end).  ``OSError`` when the file is a link, not a regular file, or not ``size`` bytes long."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = f.read(size + 1)
    if len(data) != size:
        raise OSError(errno.EIO, f"has {len(data) if len(data) <= size else 'more than ' + str(size)} bytes, "
                                 f"expected {size}", str(path))
    return data


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows: rely on age alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BlobStore:
    """The ``blobs/`` and ``tmp/`` directories under a library root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"

    def ensure_dirs(self) -> None:
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def holds_content(self) -> bool:
        """Whether any file lies under ``blobs/`` (then the library is not new, whatever its catalogue says)."""
        try:
            return any(True for _ in self.files())
        except OSError:
            return True

    def path(self, sha256: str, suffix: str) -> Path:
        """Where the blob ``sha256`` with ``suffix`` (``.wav``, ``.safetensors``) lives."""
        return self.blob_dir / sha256[:2] / f"{sha256}{suffix}"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def write(self, data: bytes, suffix: str) -> tuple[str, Path]:
        """Store ``data`` atomically; returns ``(sha256, path)``.  Rewrites a file already there (same bytes)."""
        digest = sha256_bytes(data)
        target = self.path(digest, suffix)
        atomic_write(target, lambda f: f.write(data), tmp_dir=self.tmp_dir, prefix=f"{os.getpid()}.",
                     suffix=TEMP_SUFFIX)
        fsync_directory(target.parent)
        return digest, target

    def verify(self, sha256: str, suffix: str, size: int | None = None) -> str | None:
        """``None`` when the blob is present and intact, else what is wrong with it."""
        path = self.path(sha256, suffix)
        if path.is_symlink():
            return f"{self.relative(path)} is a link; content files are never links"
        if path.is_dir():
            return f"{self.relative(path)} is a directory, not a file"
        if not path.is_file():
            return f"{self.relative(path)} is missing"
        if size is not None and path.stat().st_size != size:
            return f"{self.relative(path)} has {path.stat().st_size} bytes, expected {size}"
        try:
            actual = sha256_file(path)
        except OSError as e:
            return f"{self.relative(path)} is unreadable ({e.strerror or e})"
        if actual != sha256:
            return f"{self.relative(path)} is damaged (its sha256 is {actual[:16]}...)"
        return None

    def unlink(self, sha256: str, suffix: str) -> bool:
        """Delete a blob; ``True`` when there was one."""
        path = self.path(sha256, suffix)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        try:
            path.parent.rmdir()  # only succeeds when empty
        except OSError:
            pass
        return True

    def files(self) -> Iterator[tuple[str, str, Path]]:
        """Every file under ``blobs/`` as ``(sha256, suffix, path)``; names that are not blobs get sha256 ``""``."""
        if not self.blob_dir.is_dir():
            return
        for sub in sorted(self.blob_dir.iterdir()):
            fan_out = len(sub.name) == 2 and all(c in "0123456789abcdef" for c in sub.name)
            if not sub.is_dir() or sub.is_symlink() or not fan_out:
                yield "", "", sub  # only the 256 ab/ folders hold content files
                continue
            for path in sorted(sub.iterdir()):
                stem, dot, ext = path.name.partition(".")
                if len(stem) == 64 and stem.startswith(sub.name) and all(c in "0123456789abcdef" for c in stem):
                    yield stem, f"{dot}{ext}", path
                else:
                    yield "", "", path

    def stale_temp_files(self, *, grace_seconds: float = TEMP_GRACE_SECONDS) -> list[Path]:
        """Temp files whose writer is gone (its pid is not running) or that are older than ``grace_seconds``."""
        if not self.tmp_dir.is_dir():
            return []
        now = time.time()
        out = []
        for path in sorted(self.tmp_dir.iterdir()):
            pid_text = path.name.split(".", 1)[0]
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if not pid_text.isdigit() or age > grace_seconds or not _pid_alive(int(pid_text)):
                out.append(path)
        return out
