"""A library shared by many hosts: the catalogue in PostgreSQL (:mod:`.pgcatalogue`), the content files in an
S3-compatible object store (:mod:`.s3blobs`), and :func:`open_store`, which picks the backend from the location.

:class:`SharedVoiceStore` is the one :class:`~voicebank.store.store.VoiceStore` on those two backends: the same
SQL (translated by :mod:`.pgsql`) and the same rules, with what touches files done with objects instead:

1. Objects first, the row last: a voice's objects are written inside its write transaction (under the write
   lock) and the row that references them is committed after them; a crash in between leaves at most
   unreferenced objects, never a row without its objects.  A write that fails deletes the objects it created
   while it still holds the lock, so no other writer can have registered them meanwhile.
2. An object is deleted only after the transaction that dropped its last reference committed, in a second write
   transaction that checks again that nothing references it.
3. ``library check`` lists objects no voice references; ``check --delete-orphans`` deletes them (under the write
   lock, so no writer is between writing an object and registering it).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast

from ..errors import CatalogueDamagedError, CatalogueError, ContentMissingError, LibraryError, LibraryUnavailableError
from ..settings import Settings
from .blobs import BlobStore, sha256_bytes
from .catalogue import Catalogue
from .guard import TABLES
from .pgcatalogue import PgCatalogue, is_postgres_url, redact, schema_version
from .records import StoredFile
from .s3blobs import ObjectRef, S3BlobStore, is_s3_url
from .store import VoiceStore, now
from .upkeep import ContentEntry


def is_shared(location: object) -> bool:
    """Whether ``location`` names a shared library's catalogue (a ``postgresql://`` URL) rather than a directory."""
    return is_postgres_url(location)


class SharedVoiceStore(VoiceStore):
    """The catalogue at a ``postgresql://`` URL and the content files under an ``s3://bucket/prefix``."""

    def __init__(self, catalogue: str, blobs: str, *, cache_dir: Path | None = None) -> None:
        """``catalogue``: ``postgresql://user@host:port/database`` (a password is better kept in ``PGPASSWORD``
        or ``~/.pgpass``); ``blobs``: ``s3://bucket/prefix`` (credentials and endpoint from ``AWS_*``)."""
        if not is_s3_url(blobs):
            raise LibraryError(f"{blobs!r}: a library in PostgreSQL keeps its content files in an object store; pass "
                               "--blobs s3://bucket/prefix (or set VOICEBANK_BLOBS)")
        self.location = redact(catalogue)
        self.path = cast(Path, self.location)  # what messages name the library by (never a directory here)
        key = hashlib.sha256(f"{redact(catalogue)}\n{blobs}".encode()).hexdigest()[:16]
        self._local_dir = cache_dir if cache_dir is not None else Settings.from_env().cache_path / "shared" / key
        self.s3 = S3BlobStore(blobs, cache_dir=self._local_dir / "objects")
        self.pg = PgCatalogue(catalogue, holds_content=self.s3.holds_content)
        self.blobs = cast(BlobStore, self.s3)  # the same interface, with object keys for paths
        self.catalogue = cast(Catalogue, self.pg)  # connections speak the store's SQL (see pgsql)
        self._written = threading.local()
        self.s3.ensure_dirs()  # the bucket can be reached: errors surface here
        self._migrate()

    def _migrate(self) -> None:
        """Bring the catalogue's schema up to date, then refuse one whose tables are not what its version says, as
        the directory store refuses a damaged catalogue file: :class:`CatalogueDamagedError`, nothing changed."""
        try:
            self.pg.migrate()
        except CatalogueError as e:
            if isinstance(e, (CatalogueDamagedError, LibraryUnavailableError)) or "newer than" in str(e):
                raise
            version = self._stored_version()
            if version is None or version >= schema_version():
                raise
            raise CatalogueDamagedError(f"the library catalogue at {self.location} is damaged: its schema version "
                                        f"{version} does not match its tables ({e}); run voicebank library check "
                                        "(nothing was changed)") from e
        problem = self.integrity_problem()
        if problem is not None:
            raise CatalogueDamagedError(f"{problem}; run voicebank library check (nothing was changed)")

    def _stored_version(self) -> int | None:
        """The schema version the catalogue says it has (``None``: none, or it cannot be read)."""
        try:
            with contextlib.closing(self.pg._connect()) as raw:
                return self.pg._version_now(raw)
        except Exception:
            return None

    def __repr__(self) -> str:
        return f"SharedVoiceStore({self.location!r}, {self.s3.url!r})"

    @property
    def cache_dir(self) -> Path:
        """A local directory for derived files that can be computed again (per library, in voicebank's cache)."""
        return self._local_dir / "cache"

    def watch(self) -> None:
        """Follow other hosts' commits from a thread of this process's own (a server does, so that a request
        reads no counter; see :meth:`.pgcatalogue.PgCatalogue.watch`): stopped by :meth:`close`."""
        self.pg.watch()

    # --- objects instead of files ------------------------------------------------------------------------

    def read_file(self, f: StoredFile, *, voice: str) -> bytes:
        """The bytes of one of ``voice``'s files (verified against its sha256)."""
        try:
            return self.s3.read(f.sha256, f.path.suffix, f.size)
        except ContentMissingError as e:
            raise ContentMissingError(f"voice {voice!r}: its {f.role} file {e}; run voicebank library check "
                                      "--repair") from e
        except LibraryUnavailableError:
            raise
        except LibraryError as e:
            raise LibraryError(f"voice {voice!r}: its {f.role} file {e}; run voicebank library check --repair") from e

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:  # a PgConnection: the subset of sqlite3's the store uses
        created: builtins.list[ObjectRef] = []
        self._written.paths = created
        try:
            with self.catalogue.write() as conn:
                try:
                    yield conn
                except BaseException:
                    for ref in created:  # still under the write lock: no other writer can have registered them
                        with contextlib.suppress(LibraryError):
                            ref.unlink()
                    raise
        finally:
            self._written.paths = None

    def _put_blob(self, conn: sqlite3.Connection, data: bytes, suffix: str, kind: str, *,
                  rewrite: bool = False) -> str:
        """Store ``data`` as an object (inside the caller's write transaction) and register it; returns its
        sha256.  An object already registered and present is kept unless ``rewrite`` (repairs) asks otherwise."""
        digest = sha256_bytes(data)
        row = conn.execute("SELECT suffix FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        if row is not None and row[0] == suffix and not rewrite and self.s3.exists(digest, suffix, len(data)):
            return digest
        existed = self.s3.exists(digest, suffix)
        self.s3.write(data, suffix)
        created = getattr(self._written, "paths", None)
        if not existed and created is not None:
            created.append(ObjectRef(self.s3, digest, suffix))
        conn.execute("INSERT OR REPLACE INTO blobs (sha256, kind, suffix, size, created_at) VALUES (?, ?, ?, ?, ?)",
                     (digest, kind, suffix, len(data), now()))
        return digest

    # --- upkeep ------------------------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise a typed error unless a voice could be added now: an object can be written and deleted, and the
        catalogue's write lock can be had and a write reaches the database."""
        probe = f"{self.s3.prefix}probe/{socket.gethostname()}-{os.getpid()}"
        try:
            self.s3.client.put_object(Bucket=self.s3.bucket, Key=probe, Body=b"")
        except Exception as e:
            raise self.s3._error(e, "write", probe) from e
        self.s3.delete_key(probe)
        with self._write() as conn:
            conn.execute("UPDATE voicebank_meta SET version = version")

    def integrity_problem(self) -> str | None:
        """``None`` when every table has the columns this voicebank uses, else what is missing."""
        try:
            with self.catalogue.read() as conn:
                rows = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                                    "WHERE table_schema = current_schema()").fetchall()
        except LibraryError as e:
            return str(e)
        have: dict[str, set[str]] = {}
        for table, column in rows:
            have.setdefault(str(table), set()).add(str(column))
        for table, columns in TABLES.items():
            if table not in have:
                return f"the library catalogue at {self.location} is damaged: its {table} table is missing"
            if not columns <= have[table]:
                return (f"the library catalogue at {self.location} is damaged: its {table} table lacks "
                        f"{', '.join(sorted(columns - have[table]))}")
        return None

    def remove_stale_temp(self) -> builtins.list[str]:
        """Nothing: an object store has no temp files (an object appears whole or not at all)."""
        return []

    def _content_entries(self) -> Iterable[tuple[str, str, ContentEntry]]:
        """Every object under ``<prefix>blobs/`` as ``(sha256, suffix, key)``; keys that are not blobs get sha256
        ``""``."""
        return self.s3.files()

    def _delete_content(self, digest: str, suffix: str, entry: ContentEntry) -> None:
        """Delete one object (and its copy in the local cache)."""
        self.s3.delete_key(str(entry))
        if digest:
            self.s3.path(digest, suffix).unlink(missing_ok=True)

    def _content_name(self, entry: ContentEntry) -> str:
        """An object as reported: its ``s3://`` URL."""
        return self.s3.object_url(str(entry))

    def _missing_content(self, digest: str, suffix: str, size: int) -> str | None:
        """What is wrong with a registered object judged by its listing alone (missing or the wrong size)."""
        if self.s3.exists(digest, suffix, size):
            return None
        return f"{self.s3.object_url(self.s3.key(digest, suffix))} is missing or has the wrong size"


def open_store(location: str | os.PathLike[str] | None, *, blobs: str | None = None,
               rebuilding: bool = False) -> VoiceStore:
    """The store at ``location`` (default ``$VOICEBANK_LIBRARY``, else the user data directory): a directory (the
    embedded SQLite store), or a ``postgresql://`` URL with the content files at ``blobs`` (``s3://bucket/prefix``;
    default ``$VOICEBANK_BLOBS``)."""
    settings = Settings.from_env()
    if location is None:
        location = settings.library_url or settings.library_path
    if is_shared(location):
        if rebuilding:
            raise LibraryError(f"{redact(str(location))}: rebuilding a shared library's catalogue from its objects "
                               "is not supported; restore the database from a backup")
        return SharedVoiceStore(str(location), blobs or settings.blobs or "")
    if blobs:
        raise LibraryError(f"--blobs {blobs!r} applies to a library in PostgreSQL (--library postgresql://...); a "
                           "library directory keeps its content files under blobs/")
    return VoiceStore(Path(location).expanduser(), rebuilding=rebuilding)


__all__ = ["SharedVoiceStore", "is_shared", "open_store"]
