"""The store's upkeep: checks before writing, integrity, orphans and temp files (mixed into
:class:`~voicebank.store.store.VoiceStore`; the SQL stays inside the store package)."""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BaseVoiceError, DuplicateAudioError, LibraryError, VoiceExistsError
from .blobs import BlobStore
from .catalogue import Catalogue
from .guard import check_schema, dir_writable, name_skeleton, nfc, os_error, read_only

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

ContentEntry = Path | str
"""Where one content file lives: its path in a library directory, its object key in a shared store."""


class Upkeep:
    """Maintenance verbs of the store; ``VoiceStore`` provides the attributes below."""

    path: Path
    blobs: BlobStore
    catalogue: Catalogue

    if TYPE_CHECKING:
        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, args: Sequence[object] = ()) -> builtins.list[sqlite3.Row]: ...

        def _drop_unreferenced(self, conn: sqlite3.Connection, blobs: Iterable[str]) -> builtins.list[str]: ...

        def _row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row: ...

    # --- checks before writing ---------------------------------------------------------------------------

    def _refuse_taken(self, conn: sqlite3.Connection, name: str, digest: str | None, label: str) -> None:
        # the audio first: a batch run again reports its stored clips as duplicates (skipped), not name clashes
        if digest:
            row = conn.execute("SELECT name FROM voices WHERE source_sha256 = ?", (digest,)).fetchone()
            if row is not None:
                raise DuplicateAudioError(f"{label}: the same audio is already in the library as {row[0]!r}",
                                          existing=row[0])
        if conn.execute("SELECT 1 FROM voices WHERE name = ?", (name,)).fetchone() is not None:
            raise VoiceExistsError(f"{label}: a voice named {name!r} is already in the library; choose another name "
                                   "(--name) or remove the old one first")
        self._refuse_lookalike(conn, name, label)

    def _refuse_lookalike(self, conn: sqlite3.Connection, name: str, label: str, *, but: str | None = None) -> None:
        """Refuse ``name`` when it looks like a stored name (see :func:`~voicebank.store.guard.name_skeleton`)."""
        for (other,) in conn.execute("SELECT name FROM voices WHERE skeleton = ?", (name_skeleton(name),)):
            if other != name and other != but and isinstance(other, str):
                raise VoiceExistsError(f"{label}: the name {name!r} looks the same as the stored voice {other!r}; "
                                       "choose a name that reads differently")

    def refuse_taken(self, name: str, digest: str | None, label: str) -> None:
        """Raise :class:`~voicebank.errors.DuplicateAudioError` when audio ``digest`` is stored, or
        :class:`~voicebank.errors.VoiceExistsError` when ``name`` is taken (a read; :meth:`insert` checks again)."""
        with self.catalogue.read() as conn:
            self._refuse_taken(conn, name, digest, label)

    def taken(self, names: Sequence[str], digests: Sequence[str]) -> tuple[set[str], set[str]]:
        """``(names, source audio digests)`` among those given that are already stored (one query each per
        thousand, by index)."""
        found_names: set[str] = set()
        found_digests: set[str] = set()
        with self.catalogue.read() as conn:
            for column, values, found in (("name", [nfc(n) for n in names], found_names),
                                          ("source_sha256", builtins.list(digests), found_digests)):
                for i in range(0, len(values), 900):
                    part = values[i: i + 900]
                    marks = ", ".join("?" * len(part))
                    found.update(r[0] for r in conn.execute(
                        f"SELECT {column} FROM voices WHERE {column} IN ({marks})", part))
        return found_names, found_digests

    def fingerprints_in_use(self) -> dict[str, set[str]]:
        """``variant -> weights fingerprints`` the stored voices of that variant were extracted with (``""`` left
        out)."""
        out: dict[str, set[str]] = {}
        for variant, fp in self._query("SELECT DISTINCT variant, weights_fingerprint FROM voices "
                                       "WHERE weights_fingerprint != ''"):
            out.setdefault(str(variant), set()).add(str(fp))
        return out

    def _base_id(self, conn: sqlite3.Connection, base: str) -> int:
        row = self._row(conn, base)
        if row["mode"] == "embedding":
            raise BaseVoiceError(f"voice {base!r} keeps only an embedding, so it has no S3Gen reference to lend; "
                                 "choose an audio or conditionals voice as the base")
        return int(row["id"])

    def check_base(self, base: str) -> None:
        """Raise unless ``base`` exists and can lend an S3Gen reference (is not embedding-only)."""
        with self.catalogue.read() as conn:
            self._base_id(conn, base)

    def check_writable(self) -> None:
        """Raise a :class:`~voicebank.errors.LibraryWriteError` (read-only, a stray file) or a
        :class:`~voicebank.errors.CatalogueError` (locked) unless a voice could be added now: checked before
        any costly work (``add`` runs it before extracting)."""
        for d in (self.path, self.blobs.blob_dir, self.blobs.tmp_dir):
            if not d.is_dir():
                raise os_error(NotADirectoryError(20, "not a directory", str(d)), self.path)
            if not dir_writable(d):
                raise read_only(self.path, f"{self.blobs.relative(d) if d != self.path else 'its directory'} is "
                                "not writable")
        try:  # permissions alone miss immutable files and directories (chattr +i), even for root
            fd, probe = tempfile.mkstemp(prefix=f"{os.getpid()}.", suffix=".tmp", dir=self.blobs.tmp_dir)
            os.close(fd)
            os.unlink(probe)
            # (the catalogue's own files are not opened here: closing a second descriptor of a file drops this
            # process's SQLite locks on it; the write transaction below finds a read-only catalogue instead)
        except OSError as e:
            raise os_error(e, self.path) from e
        with self._write() as conn:  # the write lock can be had (waits as a write would, then says who holds it)
            # and a write reaches the files: rewrite the schema version as it is (one WAL frame), which fails on
            # a read-only or immutable catalogue, -wal or -shm as the real write would
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")

    def integrity_problem(self) -> str | None:
        """SQLite's quick check of the catalogue: ``None`` when it is sound, else what is wrong."""
        try:
            with self.catalogue.read() as conn:
                check_schema(conn, self.catalogue.path)
                rows = conn.execute("PRAGMA quick_check").fetchall()
        except LibraryError as e:
            return str(e)
        # a row breaking a CHECK or NOT NULL constraint is one bad row, which the row checks report by voice
        found = [str(r[0]) for r in rows if not str(r[0]).startswith(("CHECK constraint failed", "NULL value in"))]
        return None if found in ([], ["ok"]) else found[0]

    def remove_stale_temp(self) -> builtins.list[str]:
        """Delete temp files of writers that are gone; returns their paths relative to the library."""
        removed = []
        for tmp in self.blobs.stale_temp_files():
            try:
                tmp.unlink()
                removed.append(self.blobs.relative(tmp))
            except OSError:  # gone meanwhile, or a read-only library: left for a later check
                pass
        return removed

    def remove_orphans(self, *, delete: bool = True) -> builtins.list[str]:
        """The entries under ``blobs/`` no voice uses (stray files and directories included), relative to the
        library.  With ``delete`` they are deleted (under the write lock, so no writer is between writing a file
        and registering it).  A directory where a voice's file belongs is not listed here: the voice's own
        check reports it (see :meth:`damaged_files`).  (A shared store: the objects, as ``s3://`` URLs; see
        :meth:`_content_entries`.)"""
        removed: builtins.list[str] = []
        with self._write() as conn:
            if delete:
                self._drop_unreferenced(conn, [r[0] for r in conn.execute("SELECT sha256 FROM blobs")])
            referenced = {r[0] for r in conn.execute("SELECT DISTINCT blob FROM voice_files")}
            registered = {r[0]: r[1] for r in conn.execute("SELECT sha256, suffix FROM blobs")}
            for digest, suffix, entry in builtins.list(self._content_entries()):
                if digest and registered.get(digest) == suffix and (delete or digest in referenced):
                    continue  # a voice's (a directory there is that voice's problem, see damaged_files)
                if delete:
                    self._delete_content(digest, suffix, entry)
                removed.append(self._content_name(entry))
        return removed

    def damaged_files(self, *, verify_hashes: bool = True) -> tuple[int, dict[str, str]]:
        """``(number of files, {sha256: problem})`` over every registered file (missing, wrong size or hash)."""
        with self.catalogue.read() as conn:
            blobs = conn.execute("SELECT sha256, suffix, size FROM blobs").fetchall()
        damage: dict[str, str] = {}
        for digest, suffix, size in blobs:
            problem = (self.blobs.verify(digest, suffix, size) if verify_hashes
                       else self._missing_content(digest, suffix, size))
            if problem:
                damage[digest] = problem
        return len(blobs), damage

    # --- where the content lives (a shared store's objects override these) --------------------------------

    def _content_entries(self) -> Iterable[tuple[str, str, ContentEntry]]:
        """Every entry under ``blobs/`` as ``(sha256, suffix, path)``; names that are not blobs get sha256 ``""``."""
        return self.blobs.files()

    def _delete_content(self, digest: str, suffix: str, entry: ContentEntry) -> None:
        """Delete one entry of :meth:`_content_entries` (a stray directory with what is in it)."""
        path = Path(entry)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if path.parent != self.blobs.blob_dir:
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    def _content_name(self, entry: ContentEntry) -> str:
        """An entry of :meth:`_content_entries` as reported: relative to the library, a directory ending in ``/``."""
        path = Path(entry)
        return self.blobs.relative(path) + ("/" if path.is_dir() else "")

    def _missing_content(self, digest: str, suffix: str, size: int) -> str | None:
        """What is wrong with a registered file judged without reading it (missing), else ``None``."""
        path = self.blobs.path(digest, suffix)
        return None if path.is_file() else f"{self.blobs.relative(path)} is missing"

    def file_references(self) -> builtins.list[tuple[str, int, str, str, str]]:
        """``(voice name, voice id, role, variant, sha256)`` of every file reference."""
        with self.catalogue.read() as conn:
            return [tuple(r) for r in conn.execute(
                "SELECT v.name, v.id, vf.role, vf.variant, vf.blob FROM voice_files vf "
                "JOIN voices v ON v.id = vf.voice_id").fetchall()]


__all__ = ["Upkeep"]
