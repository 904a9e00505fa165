"""The shared library's catalogue in PostgreSQL: connections from a pool, transactions, schema and migrations.

The same interface as the SQLite :class:`~voicebank.store.catalogue.Catalogue` (``read``, ``write``,
``connection``, ``generation``, ``user_version``, ``migrate``, ``close``), with connections that speak the
store's SQL (:mod:`.pgsql`), so the one :class:`~voicebank.store.store.VoiceStore` runs on either.

Every write transaction first takes one transaction-level advisory lock (``pg_advisory_xact_lock``), which is what
SQLite's ``BEGIN IMMEDIATE`` is: one writer at a time, on every host, and every check made inside a write
(the name is free, no look-alike, nothing references a file about to be deleted) still holds at its commit.  The
unique constraints (names, source audio) stand behind that.  Writers queue for the lock up to ``timeout``
seconds.  Reads are ``REPEATABLE READ READ ONLY`` transactions: one consistent snapshot, never blocked by a
writer.  The lock also keeps ``vector_log``'s sequence in commit order, which a search index relies on.

``psycopg`` and ``psycopg_pool`` are imported on first use: the core package does not need them
(``pip install voicebank[postgres]``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import (
    CatalogueDamagedError,
    CatalogueError,
    LibraryError,
    LibraryUnavailableError,
    LibraryWriteError,
    MissingDependencyError,
)
from .catalogue import BUSY_TIMEOUT_SECONDS, Generation
from .pgschema import META, MIGRATIONS, SEED_META
from .pgsql import PgConnection
from .pgwatch import POLL_S, GenerationWatch

WRITE_LOCK = 0x766F696365_62616E6B & 0x7FFF_FFFF_FFFF_FFFF
"""The advisory lock every write transaction holds (per database)."""
POOL_SIZE = 16
"""Most connections one process keeps to the catalogue."""
REFUSALS = ("authentication failed", "does not exist", "no pg_hba.conf entry", "password authentication",
            "permission denied")
"""What the server says when it answers but refuses these credentials (not worth retrying)."""
STATEMENT_TIMEOUT_S = 2.0
"""The longest a generation poll may run (the watch's connection only)."""
POOL_WAIT_S = 3.0
"""The longest a read or write waits for a pooled connection before it fails with
:class:`~voicebank.errors.LibraryUnavailableError` (the database does not answer, or every connection stayed busy):
a request is answered 503 at once rather than held for the catalogue's ``timeout``."""
FRESH_S = 1.0
"""A pooled connection used this recently is handed out without the pool's round-trip check."""
WAIT_SLICE_S = 0.25
"""A wait for a connection looks again at the generation watch (and for a pool replaced meanwhile) this often."""


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` names a PostgreSQL catalogue (``postgresql://`` or ``postgres://``)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def schema_version() -> int:
    """The version this voicebank writes (the number of migrations)."""
    return len(MIGRATIONS)


def _modules() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as e:
        raise MissingDependencyError("a library in PostgreSQL needs psycopg 3 and psycopg_pool: pip install "
                                     "'voicebank[postgres]'") from e
    return psycopg, psycopg_pool


class PgCatalogue:
    """A PostgreSQL catalogue at ``url``; safe to share between threads (a pool per process)."""

    def __init__(self, url: str, *, timeout: float = BUSY_TIMEOUT_SECONDS, pool_size: int = POOL_SIZE,
                 pool_wait_s: float = POOL_WAIT_S, holds_content: Callable[[], bool] | None = None) -> None:
        self.url = url
        self.path = redact(url)
        """What messages call the catalogue (the URL without its password)."""
        self.timeout = timeout
        self.pool_size = pool_size
        self.pool_wait_s = min(pool_wait_s, timeout)
        """The longest a transaction waits for a pooled connection (:data:`POOL_WAIT_S`)."""
        self._holds_content = holds_content
        self._pool: Any = None
        self._pool_pid = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._extra: list[Any] = []
        self._migrated = False
        self._commits = itertools.count(1)
        self._commit_count = 0
        self._watch: GenerationWatch | None = None
        self._used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        """When a transaction last finished on each pooled connection (see :meth:`_check`)."""

    def __repr__(self) -> str:
        return f"PgCatalogue({self.path!r})"

    # --- errors ------------------------------------------------------------------------------------------

    def error(self, e: Exception) -> LibraryError:
        """The typed error for what PostgreSQL (or the connection to it) said."""
        if isinstance(e, LibraryError):
            return e
        psycopg, psycopg_pool = _modules()
        errors = psycopg.errors
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, (errors.LockNotAvailable, errors.QueryCanceled)):
            return CatalogueError(f"{self.path}: the catalogue stayed locked for {self.timeout:.0f} s ({text}); "
                                  "another writer holds it: try again when it is done")
        if isinstance(e, (errors.ReadOnlySqlTransaction, errors.InsufficientPrivilege)):
            return LibraryWriteError(f"the library at {self.path} is read-only ({text}): nothing was changed")
        if isinstance(e, errors.DiskFull):
            return LibraryWriteError(f"the library at {self.path}: the database is full ({text}); nothing was "
                                     "changed")
        if isinstance(e, (errors.UndefinedTable, errors.UndefinedColumn, errors.DataCorrupted)):
            return CatalogueDamagedError(f"the library catalogue at {self.path} is damaged: {text}; run voicebank "
                                         "library check (nothing was changed)")
        if isinstance(e, psycopg.OperationalError) and any(w in text for w in REFUSALS):
            return CatalogueError(f"the library catalogue at {self.path} refused the connection ({text}); check the "
                                  "user, the password (PGPASSWORD or ~/.pgpass) and the database name")
        if isinstance(e, (psycopg.OperationalError, psycopg_pool.PoolTimeout)):
            return LibraryUnavailableError(f"cannot reach the library catalogue at {self.path} ({text}); check that "
                                           "the database server is up and the URL is right")
        return CatalogueError(f"the library catalogue at {self.path}: {text}")

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        psycopg, psycopg_pool = _modules()
        try:
            yield
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            error = self.error(e)
            watch = self._watch
            if watch is not None and isinstance(error, LibraryUnavailableError) and isinstance(e, psycopg.Error):
                watch.report(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            raise error from e

    # --- connections -------------------------------------------------------------------------------------

    def _connect(self, **kwargs: Any) -> Any:
        psycopg, _ = _modules()
        with self._mapped():
            return psycopg.connect(self.url, connect_timeout=max(1, int(min(self.timeout, 30))), **kwargs)

    def pool(self) -> Any:
        """This process's connection pool (a new one after a fork: connections are never shared across one).  It
        opens without waiting for its first connection: a transaction waits for one (:meth:`_getconn`), for
        :attr:`pool_wait_s` at most, and no caller waits on this object's lock for a database that is down."""
        _, psycopg_pool = _modules()
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                pool = psycopg_pool.ConnectionPool(
                    self.url, min_size=1, max_size=self.pool_size, timeout=self.pool_wait_s, open=False,
                    kwargs={"connect_timeout": max(1, int(min(self.timeout, 30)))},
                    check=self._check, name="voicebank")
                with self._mapped():
                    pool.open(wait=False)
                self._pool, self._pool_pid = pool, os.getpid()
            return self._pool

    def _check(self, conn: Any) -> None:
        """The pool's check of a connection it hands out: a round trip, unless a transaction finished on it
        less than :data:`FRESH_S` ago (a server that went away since is the watch's to notice, and an error
        on a dead connection is a 503 that drops it from the pool)."""
        used = self._used.get(conn)
        if used is None or time.monotonic() - used > FRESH_S:
            _, psycopg_pool = _modules()
            psycopg_pool.ConnectionPool.check_connection(conn)

    def connection(self) -> PgConnection:
        """A connection of this thread's own (autocommit), the schema migrated on first use.  The store's
        transactions use :meth:`read` and :meth:`write` (pooled); this is for a look outside them."""
        if not self._migrated:
            self.migrate()
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid() or conn.raw.closed:
            conn = PgConnection(self._connect(autocommit=True))
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._lock:
                self._extra.append(conn.raw)
        return conn

    def close(self) -> None:
        """Close the pool and every connection this object opened in this process (they reopen on demand), and
        stop following the generation (:meth:`watch`)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        with self._lock:
            pool, self._pool = (self._pool, None) if self._pool_pid == os.getpid() else (None, None)
            extra, self._extra = self._extra, []
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.close()
        for raw in extra:
            with contextlib.suppress(Exception):
                raw.close()
        self._local = threading.local()

    def watch(self, interval_s: float = POLL_S) -> GenerationWatch:
        """Follow the generation from a thread of this process's own (for servers): :meth:`generation` then
        answers from the last value read, at most ``interval_s`` old, without a query; and while the database
        cannot be reached, reads and writes fail at once with :class:`~voicebank.errors.LibraryUnavailableError`
        (no request waits for a connection), until it answers again.  Idempotent; :meth:`close` stops it."""
        if self._watch is None:
            if not self._migrated:
                self.migrate()
            self._watch = GenerationWatch(self._watch_connection, where=self.path, interval_s=interval_s,
                                          on_change=self._reachable).start()
        return self._watch

    def _watch_connection(self) -> Any:
        psycopg, _ = _modules()
        return psycopg.connect(self.url, autocommit=True, connect_timeout=2,
                               options=f"-c statement_timeout={int(STATEMENT_TIMEOUT_S * 1000)}")

    def _reachable(self, up: bool) -> None:
        """The database stopped or started answering: drop the pool, so that no client waits on connections
        that are gone (it fails now, as a new read does while the watch says down) and the next read after the
        database is back gets fresh ones."""
        with self._lock:
            pool, self._pool = (self._pool, None) if self._pool_pid == os.getpid() else (None, None)
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.close(timeout=1)

    def _check_reachable(self) -> None:
        watch = self._watch
        if watch is not None and not watch.up:
            raise watch.unavailable()

    # --- transactions ------------------------------------------------------------------------------------

    def _getconn(self) -> tuple[Any, Any]:
        """``(pool, connection)``: a connection from the pool, waiting :attr:`pool_wait_s` at most.

        The wait is cut into :data:`WAIT_SLICE_S` slices: between two, a watch that says the database is down
        fails it at once, and a pool closed meanwhile (the watch replaces it when the database stops or comes
        back) is left for the new one.  A client that waits on a pool as it closes is not always woken
        (psycopg_pool may queue it after the close, where nothing serves or fails it before its timeout):
        a slice bounds that too."""
        _, psycopg_pool = _modules()
        deadline = time.monotonic() + self.pool_wait_s
        while True:
            self._check_reachable()
            pool = self.pool()
            left = deadline - time.monotonic()
            try:
                return pool, pool.getconn(timeout=max(0.01, min(WAIT_SLICE_S, left)))
            except psycopg_pool.PoolClosed:
                closed = True
            except psycopg_pool.PoolTimeout:
                closed = False
            if time.monotonic() >= deadline:
                self._check_reachable()
                why = "its pool was closed" if closed else f"all {self.pool_size} connections busy or none opened"
                raise LibraryUnavailableError(f"cannot reach the library catalogue at {self.path} (no connection in "
                                              f"{self.pool_wait_s:.1f} s: {why}); check that the database server is "
                                              "up and the URL is right, or try again")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection of the migrated catalogue, while the watch does not say it is down (errors
        mapped to the store's); committed on success, rolled back on an exception, then back to its pool."""
        if not self._migrated:
            self.migrate()
        pool, raw = self._getconn()
        try:
            with self._mapped(), raw:
                yield raw
            self._used[raw] = time.monotonic()
        finally:
            pool.putconn(raw)

    @contextlib.contextmanager
    def write(self) -> Iterator[PgConnection]:
        """One write transaction holding the write lock; committed on success, rolled back on any exception."""
        psycopg, psycopg_pool = _modules()
        with self._connection() as raw:
            try:
                raw.execute(f"SET LOCAL lock_timeout = {int(self.timeout * 1000)}")
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield PgConnection(raw)
                raw.execute("UPDATE voicebank_meta SET generation = generation + 1")
            except BaseException as e:
                with contextlib.suppress(psycopg.Error):
                    raw.rollback()
                if isinstance(e, (psycopg.Error, psycopg_pool.PoolTimeout)):
                    raise self.error(e) from e
                raise
            try:
                raw.commit()
            except psycopg.Error as e:
                err = self.error(e)
                raise type(err)(f"{err} (could not commit: nothing was changed)") from e
            finally:
                self._commit_count = next(self._commits)

    @contextlib.contextmanager
    def read(self) -> Iterator[PgConnection]:
        """A consistent read snapshot (``REPEATABLE READ READ ONLY``)."""
        psycopg, _ = _modules()
        with self._connection() as raw:
            # the transaction's kind goes in psycopg's own BEGIN (a SET TRANSACTION would be one more round trip)
            raw.isolation_level, raw.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
            try:
                yield PgConnection(raw)
            finally:
                with contextlib.suppress(psycopg.Error):
                    raw.rollback()
                with contextlib.suppress(psycopg.Error):
                    raw.isolation_level, raw.read_only = None, None

    def generation(self) -> Generation:
        """A token that changes whenever the catalogue may have changed: after every write transaction of this
        object, and (the counter every write increments) after any commit by another process or host.  While
        :meth:`watch` follows it, the last value its thread read (no query)."""
        watch = self._watch
        if watch is not None:
            return self._commit_count, 0, watch.value()
        with self.read() as conn:
            (value,) = conn.raw.execute("SELECT generation FROM voicebank_meta").fetchone()
        return self._commit_count, 0, int(value)

    # --- schema ------------------------------------------------------------------------------------------

    def user_version(self, conn: PgConnection | None = None) -> int:
        if conn is not None:
            return int(conn.raw.execute("SELECT version FROM voicebank_meta").fetchone()[0])
        with self.read() as c:
            return int(c.raw.execute("SELECT version FROM voicebank_meta").fetchone()[0])

    def _version_now(self, raw: Any) -> int | None:
        """The schema version, or ``None`` for a database without voicebank's tables."""
        found = raw.execute("SELECT to_regclass('voicebank_meta') IS NOT NULL").fetchone()[0]
        if not found:
            return None
        return int(raw.execute("SELECT version FROM voicebank_meta").fetchone()[0])

    def migrate(self, conn: PgConnection | None = None) -> None:
        """Bring the schema to :func:`schema_version`, in one transaction under the write lock (safe when
        processes on several hosts race)."""
        target = schema_version()
        psycopg, _ = _modules()
        raw = self._connect(autocommit=False)
        try:
            with self._mapped():
                version = self._version_now(raw)
                raw.rollback()
                if version is None and self._holds_content is not None and self._holds_content():
                    raise CatalogueDamagedError(f"the library catalogue at {self.path} is damaged: its tables are "
                                                "missing while the library holds content files; run voicebank "
                                                "library check (nothing was changed)")
                if version is not None and version > target:
                    raise CatalogueError(f"{self.path}: the catalogue has schema version {version}, newer than this "
                                         f"voicebank reads ({target}); upgrade voicebank")
                if version != target:
                    raw.execute(f"SET LOCAL lock_timeout = {int(self.timeout * 1000)}")
                    raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    raw.execute(META)
                    raw.execute(SEED_META)
                    version = int(raw.execute("SELECT version FROM voicebank_meta").fetchone()[0])
                    if version > target:
                        raise CatalogueError(f"{self.path}: the catalogue has schema version {version}, newer than "
                                             f"this voicebank reads ({target}); upgrade voicebank")
                    wrapped = PgConnection(raw)
                    for steps in MIGRATIONS[version:]:
                        for step in steps:
                            if callable(step):
                                step(wrapped)
                            else:
                                raw.execute(step)
                    raw.execute("UPDATE voicebank_meta SET version = %s, generation = generation + 1", (target,))
                    raw.commit()
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                raw.rollback()
            raise
        finally:
            with contextlib.suppress(psycopg.Error):
                raw.close()
        self._migrated = True


__all__ = ["POOL_SIZE", "POOL_WAIT_S", "WRITE_LOCK", "PgCatalogue", "is_postgres_url", "redact", "schema_version"]
