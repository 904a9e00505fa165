"""The library's SQLite catalogue: schema, migrations, connections and transactions.

One file, ``catalogue.sqlite3``, in WAL mode so readers never block the writer, with a busy timeout so
several processes can add voices at once (writers queue for SQLite's write lock).  Every change is one
``BEGIN IMMEDIATE`` transaction: it takes the write lock up front, so a transaction never fails half-way
for a lock it could not upgrade.  ``synchronous=FULL`` makes a committed transaction survive a power cut.

The schema version is ``PRAGMA user_version``; :data:`MIGRATIONS` holds one list of statements per
version, applied in order inside a single transaction.  A catalogue from a newer voicebank is refused.

Tables (version 1):

* ``voices``: one row per named voice: mode, primary variant, default exaggeration, the source audio's
  sha256 (unique: the same audio is stored once), duration, sample rate, channels, loudness, the speaker
  embedding (256 float32) and x-vector (192 float32) with the fingerprint of the weights they came from,
  the base voice of an embedding-only voice, origin (``audio``, ``import``, ``blend``), an experimental
  flag, provenance (who added it, when, a consent note, JSON details) and the inspection report (JSON).
* ``tags``: free-form tags of a voice.
* ``blobs``: the content-addressed files (sha256, kind, suffix, size).
* ``voice_files``: which files a voice uses, by role: ``audio`` (the decoded reference), ``conditionals``
  (a stored voice file per variant) or ``cache`` (conditionals extracted on demand from the audio).  A
  blob is deleted only when no row here references it.

Version 2 adds what keeps similarity search independent of the library's size:

* ``voices.norm_mean``, ``norm_std``, ``norm_cohort``: a voice's score-normalisation statistics and the cohort
  they were computed against;
* ``cohorts``: the cohorts (their vectors, the weights fingerprint of their built-in part, the library size when
  built);
* ``vector_log``: the id of every voice row inserted, deleted or changed in a way a search index must see,
  filled by triggers, so an index in any process catches up by reading what changed since it last looked;
* ``voices.skeleton``: what the name looks like (confusable letters folded), indexed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import CatalogueError, LibraryError
from .guard import check_schema, damaged, name_skeleton, sqlite_error

CATALOGUE_NAME = "catalogue.sqlite3"
BUSY_TIMEOUT_SECONDS = 60.0
"""How long a writer waits for another process's transaction before giving up."""

_V1: tuple[str, ...] = (
    """CREATE TABLE voices (
        id                  INTEGER PRIMARY KEY,
        name                TEXT NOT NULL UNIQUE,
        mode                TEXT NOT NULL CHECK (mode IN ('audio', 'conditionals', 'embedding')),
        variant             TEXT NOT NULL,
        exaggeration        REAL,
        source_sha256       TEXT UNIQUE,
        source_name         TEXT NOT NULL DEFAULT '',
        duration            REAL,
        sample_rate         INTEGER,
        channels            INTEGER,
        loudness_lufs       REAL,
        speaker_emb         BLOB,
        xvector             BLOB,
        weights_fingerprint TEXT NOT NULL DEFAULT '',
        base_id             INTEGER REFERENCES voices(id) ON DELETE SET NULL,
        origin              TEXT NOT NULL DEFAULT 'audio',
        experimental        INTEGER NOT NULL DEFAULT 0,
        provenance          TEXT NOT NULL DEFAULT '{}',
        added_by            TEXT NOT NULL DEFAULT '',
        added_at            TEXT NOT NULL,
        consent             TEXT NOT NULL DEFAULT '',
        inspection          TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE tags (
        voice_id INTEGER NOT NULL REFERENCES voices(id) ON DELETE CASCADE,
        tag      TEXT NOT NULL,
        PRIMARY KEY (voice_id, tag)
    )""",
    """CREATE TABLE blobs (
        sha256     TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        suffix     TEXT NOT NULL,
        size       INTEGER NOT NULL,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE voice_files (
        voice_id            INTEGER NOT NULL REFERENCES voices(id) ON DELETE CASCADE,
        role                TEXT NOT NULL CHECK (role IN ('audio', 'conditionals', 'cache')),
        variant             TEXT NOT NULL DEFAULT '',
        blob                TEXT NOT NULL REFERENCES blobs(sha256),
        weights_fingerprint TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (voice_id, role, variant)
    )""",
    "CREATE INDEX voice_files_blob ON voice_files(blob)",
    "CREATE INDEX tags_tag ON tags(tag)",
)

_V2: tuple[str, ...] = (
    # each voice's similarity statistics against the cohort they were computed with (see store/vectors.py)
    "ALTER TABLE voices ADD COLUMN norm_mean REAL",
    "ALTER TABLE voices ADD COLUMN norm_std REAL",
    "ALTER TABLE voices ADD COLUMN norm_cohort INTEGER",
    """CREATE TABLE cohorts (
        id            INTEGER PRIMARY KEY,
        fingerprint   TEXT NOT NULL,
        library_size  INTEGER NOT NULL,
        vectors       BLOB NOT NULL,
        exclude_above REAL,
        top_k         INTEGER NOT NULL,
        created_at    TEXT NOT NULL
    )""",
    # every change to a voice's row that a search index must see, in commit order (filled by the triggers)
    """CREATE TABLE vector_log (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        voice_id INTEGER NOT NULL
    )""",
    "CREATE TRIGGER vector_log_insert AFTER INSERT ON voices BEGIN "
    "INSERT INTO vector_log (voice_id) VALUES (new.id); END",
    "CREATE TRIGGER vector_log_delete AFTER DELETE ON voices BEGIN "
    "INSERT INTO vector_log (voice_id) VALUES (old.id); END",
    "CREATE TRIGGER vector_log_update AFTER UPDATE OF name, speaker_emb, norm_mean, norm_std, norm_cohort ON voices "
    "BEGIN INSERT INTO vector_log (voice_id) VALUES (new.id); END",
    # what each name looks like (guard.name_skeleton; the store writes it with the name), indexed, so a look-alike
    # name is found with one lookup instead of reading every name
    "ALTER TABLE voices ADD COLUMN skeleton TEXT",
    "UPDATE voices SET skeleton = name_skeleton(name)",
    "CREATE INDEX voices_skeleton ON voices(skeleton)",
)

MIGRATIONS: list[Sequence[str]] = [_V1, _V2]
"""``MIGRATIONS[i]`` takes the catalogue from ``user_version`` i to i + 1 (:mod:`.pgschema` translates them for
PostgreSQL: a trigger or a step that calls a Python function needs its PostgreSQL form there)."""


Generation = tuple[int, int, int]
"""What :meth:`Catalogue.generation` returns: (commits of this object, connection serial, data_version)."""

_CONNECTION_SERIALS = itertools.count(1)
"""Numbers the connections this process opens (see :meth:`Catalogue.generation`)."""

PAGE_CACHE_KIB = 512
"""SQLite's page cache per connection (its default is 2 MiB).  Every thread of a process has its own
connection, so a server's I/O threads would otherwise hold several copies of a catalogue's hot pages; the
operating system's file cache already keeps the file in memory, and reads are single rows by name."""


PAGE_SIZE = 16_384
"""Bytes per page of a new catalogue: a voice's row (two vectors and its text, about 2 kB) would fill most of a
4 kB page on its own, wasting about half of the file; 16 kB pages hold seven."""


def schema_version() -> int:
    """The version this voicebank writes (the number of migrations)."""
    return len(MIGRATIONS)


class Catalogue:
    """Connections to one catalogue file: one per thread (and per process after a fork)."""

    def __init__(self, path: Path, *, timeout: float = BUSY_TIMEOUT_SECONDS,
                 holds_content: Callable[[], bool] | None = None) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._holds_content = holds_content
        """Whether the library has content files: then a missing or empty catalogue is damage, not a new library."""
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._migrated = False
        self._commits = itertools.count(1)
        self._commit_count = 0

    # --- connections ------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self._refuse_lost()
        conn: sqlite3.Connection | None = None
        try:
            # each connection stays with the thread that opened it; check_same_thread=False only lets close()
            # release connections of threads that are gone
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            # for the migration that fills voices.skeleton (see _V2)
            conn.create_function("name_skeleton", 1, name_skeleton, deterministic=True)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new catalogue only: before its first write
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise sqlite_error(e, self.path, timeout=self.timeout) from e
        if str(mode).lower() != "wal":
            conn.close()
            raise CatalogueError(f"{self.path}: the catalogue cannot use WAL mode (got {mode}); put the library on "
                                 "a local file system")
        return conn

    def _refuse_lost(self) -> None:
        """Never start a new, empty catalogue over a lost or emptied one while content files exist."""
        if self.path.exists() and not self.path.is_file():
            raise damaged(self.path, "it is not a regular file")
        size = self.path.stat().st_size if self.path.exists() else None
        if size and size >= 100:  # at least an SQLite header: SQLite itself judges the rest
            return
        if self._holds_content is not None and self._holds_content():
            what = "missing" if size is None else f"cut to {size} bytes"
            raise damaged(self.path, f"the file is {what} while the library holds voice files")
        if size:
            raise damaged(self.path, f"the file is cut to {size} bytes")

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema migrated) on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = self._open()
            self._local.conn, self._local.pid = conn, os.getpid()
            self._local.serial = next(_CONNECTION_SERIALS)
            with self._lock:
                self._all.append(conn)
        if not self._migrated:
            try:
                self.migrate(conn)
                check_schema(conn, self.path)
            except sqlite3.Error as e:
                raise sqlite_error(e, self.path, timeout=self.timeout) from e
        return conn

    def close(self) -> None:
        """Close every connection this object opened (in this process)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    # --- transactions -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); committed on success, rolled back on any exception."""
        conn = self.connection()
        self._begin(conn, "BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise sqlite_error(e, self.path, timeout=self.timeout) from e
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            err = sqlite_error(e, self.path, timeout=self.timeout)
            raise type(err)(f"{err} (could not commit: nothing was changed)") from e
        finally:
            self._commit_count = next(self._commits)  # even a failed COMMIT may have changed something

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot (a deferred transaction)."""
        conn = self.connection()
        self._begin(conn, "BEGIN")
        try:
            yield conn
        except sqlite3.Error as e:
            raise sqlite_error(e, self.path, timeout=self.timeout) from e
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("COMMIT")

    def generation(self) -> Generation:
        """A token that changes whenever the catalogue may have changed: after every write transaction of this
        object, and (through SQLite's ``PRAGMA data_version`` of this thread's connection) after any commit by
        another connection or process.  Equal tokens read on the same thread mean nothing was committed in
        between; a cheap check (no transaction, a few microseconds) for caches of what the catalogue said."""
        conn = self.connection()
        try:
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as e:
            raise sqlite_error(e, self.path, timeout=self.timeout) from e
        # data_version is only comparable on one connection: the serial names it (never reused, unlike id())
        return self._commit_count, int(self._local.serial), version

    def _begin(self, conn: sqlite3.Connection, statement: str) -> None:
        try:
            conn.execute(statement)
        except sqlite3.Error as e:
            raise sqlite_error(e, self.path, timeout=self.timeout) from e

    # --- schema -----------------------------------------------------------------------------------------

    def user_version(self, conn: sqlite3.Connection | None = None) -> int:
        conn = conn or self.connection()
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema to :func:`schema_version`, in one transaction (safe when processes race)."""
        target = schema_version()
        version = self.user_version(conn)
        if version == target:
            self._migrated = True
            return
        if version < 0:
            raise damaged(self.path, f"its schema version {version} is invalid")
        if version > target:
            raise CatalogueError(f"{self.path}: the catalogue has schema version {version}, newer than this voicebank "
                                 f"reads ({target}); upgrade voicebank")
        self._begin(conn, "BEGIN IMMEDIATE")
        try:
            version = self.user_version(conn)  # another process may have migrated meanwhile
            if version > target:
                raise CatalogueError(f"{self.path}: the catalogue has schema version {version}, newer than this "
                                     f"voicebank reads ({target}); upgrade voicebank")
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute("COMMIT")
        except LibraryError:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self._migrated = True
