"""Writing files so that they appear whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import OutputPathError


def _reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "the file system is full"
    if e.errno == errno.EDQUOT:
        return "the disk quota is exhausted"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if e.errno == errno.EROFS:
        return "the file system is read-only"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a regular file, not a directory"
    if e.errno == errno.EISDIR:
        return "it is a directory"
    return e.strerror or type(e).__name__


def missing_parent(path: str | os.PathLike[str], what: str = "output", opt_in: str = "mkdir=True") -> None:
    """:class:`~voicebank.errors.OutputPathError` when ``path``'s parent directory does not exist, as ``cp``
    refuses: a typo in a directory name must not create a new directory tree.  ``opt_in`` names the option
    that creates missing parents (``--parents`` on the command line, ``mkdir=True`` in the API)."""
    path = Path(path)
    parent = path.parent
    if not parent.exists() and not parent.is_symlink():
        raise OutputPathError(f"{what} {path}: the directory {parent} does not exist; create it first or pass "
                              f"{opt_in}")


def check_output_path(path: str | os.PathLike[str], what: str = "output", *, mkdir: bool = False,
                      opt_in: str = "mkdir=True") -> Path:
    """``path`` if a file can be created there; else :class:`~voicebank.errors.OutputPathError` saying why.

    Checked before any work is done: ``path`` must not be a directory, no parent may be a regular file, and the
    nearest existing parent must be a writable directory.  The parent directory must exist unless ``mkdir``
    (then the missing ones are created when the file is written; ``opt_in`` names that option in the
    message).  Creates nothing.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; give a file name inside it")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{what} {path} exists and is not a regular file")
    parent = path.parent
    if not mkdir and not parent.exists() and not parent.is_symlink():
        # say first what is wrong on the way (a regular file, a dangling link), else that it is missing
        up = parent.parent
        while not up.exists() and not up.is_symlink() and up != up.parent:
            up = up.parent
        if up.exists() and up.is_dir():
            missing_parent(path, what, opt_in)
    while not parent.exists():
        if parent.is_symlink():
            raise OutputPathError(f"{what} {path}: {parent} is a dangling link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{what} {path}: {parent} is a file, not a directory")
    try:
        read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs (Windows)
        read_only = False
    if read_only:
        raise OutputPathError(f"{what} {path}: {parent} is on a read-only file system")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: the directory {parent} is not writable")
    return path


def _make_parents(directory: Path) -> list[Path]:
    """``mkdir -p directory``; returns the directories created (deepest last) so a failure can remove them."""
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    created: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                _remove_dirs(created)
                raise
            continue
        except OSError:
            _remove_dirs(created)
            raise
        created.append(d)
    return created


def _remove_dirs(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


def _umask() -> int:
    """This process's umask, read without changing it where the system says it (Linux's ``/proc``), else by
    setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(fd: int) -> None:
    """Give a private temp file (``mkstemp`` makes them 0600) the mode a new file gets under the umask (0644
    under umask 022), as ``open`` would, before it is renamed into place: other users (a TTS worker, a
    Spark job) can read what voicebank writes, exactly as the umask allows."""
    if hasattr(os, "fchmod"):  # POSIX; elsewhere files have no such mode bits
        os.fchmod(fd, 0o666 & ~_umask())


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries (a rename, a new file) to disk.  A no-op where directories cannot be opened
    (Windows) or fsynced (some network file systems)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object], *, tmp_dir: Path | None = None,
                 prefix: str | None = None, suffix: str = ".tmp", mkdir: bool = True,
                 opt_in: str = "mkdir=True") -> None:
    """Create ``path`` atomically: ``write(f)`` fills a temp file, which is fsynced and renamed over ``path``;
    the directory is then fsynced, so the new name is durable when this returns.

    The temp file lives in ``tmp_dir`` (default: beside ``path``; it must be on the same filesystem).  On any
    failure the temp file and the directories this call created are removed, so an error never leaves half a
    file (or anything else) behind; an ``OSError`` (a full disk, a read-only or unwritable directory, ``path``
    being a directory or under a regular file) becomes an :class:`~voicebank.errors.OutputPathError` that
    says which.

    ``mkdir``: create ``path``'s missing parent directories (the default, for the package's own files under
    its own folders: the library's blobs, caches).  Writers of a path a user gave pass ``mkdir=False`` unless
    the user opted in (``opt_in`` names how, for the message): a missing parent is then an
    :class:`~voicebank.errors.OutputPathError`, as ``cp`` refuses, and nothing is created.
    """
    path = Path(path)
    created: list[Path] = []
    tmp: str | None = None
    try:
        if path.is_dir() and not path.is_symlink():
            raise OutputPathError(f"{path} is a directory; give a file name inside it")
        if not mkdir:
            missing_parent(path, "cannot write", opt_in)
        created = _make_parents(path.parent)
        directory = Path(tmp_dir) if tmp_dir is not None else path.parent
        created += _make_parents(directory)
        fd, tmp = tempfile.mkstemp(prefix=prefix if prefix is not None else f".{path.name}.", suffix=suffix,
                                   dir=directory)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            publish_mode(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_directory(path.parent)  # the rename itself survives a crash only once the directory is on disk
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _remove_dirs(created)
        if isinstance(e, OSError) and not isinstance(e, OutputPathError):
            raise OutputPathError(f"cannot write {path}: {_reason(e)}") from e
        raise
