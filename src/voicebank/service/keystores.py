"""Where a service's API keys are kept (:func:`open_keys`): a keys file, or a shared library's PostgreSQL
catalogue (:class:`CatalogueKeyStore`), so that every replica of ``voicebank serve`` checks the same keys: one
created or revoked with ``voicebank keys ... --library postgresql://...`` (or through any
replica's host) is accepted or refused by all of them within :data:`~.security.RELOAD_INTERVAL_S`.

The keys are rows of their own table (``voicebank_service_keys``: id, label, scope, the SHA-256 of the secret,
times), created with the first key; never the secrets.  The table is outside the library's versioned schema: it
belongs to the service, as the keys file beside a library directory does.  Each process reads it over one
connection of its own, at most every :data:`~.security.RELOAD_INTERVAL_S` while requests come; a database that
cannot be read then keeps the keys read last (logged), as an unreadable keys file does.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from ..errors import LibraryError
from ..store.pgcatalogue import PgCatalogue, is_postgres_url, redact
from .security import ApiKey, ApiKeyError, KeyStore, checked_key

TABLE = "voicebank_service_keys"
_CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL "
           "CHECK (scope IN ('read', 'read-write')), sha256 TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)")
_COLUMNS = ("id", "name", "scope", "sha256", "created_at", "revoked_at")
CONNECT_TIMEOUT_S = 2


class CatalogueKeyStore(KeyStore):
    """The API keys of the shared library whose catalogue is at ``url`` (a ``postgresql://`` URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._catalogue = PgCatalogue(url)  # for its typed errors only: it opens nothing
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        super().__init__(Path(TABLE))

    def __repr__(self) -> str:
        return f"CatalogueKeyStore({redact(self.url)!r})"

    @property
    def where(self) -> str:
        return f"the table {TABLE} of the library catalogue at {redact(self.url)}"

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one statement (autocommit) on this store's connection, made or made again as needed; the
        catalogue's typed error when the database cannot be reached or refuses."""
        import psycopg

        with self._conn_lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
                return self._conn.execute(sql, params)
            except psycopg.errors.UndefinedTable:
                raise
            except psycopg.Error as e:
                if self._conn is not None and self._conn.broken:
                    self._conn = None
                raise self._catalogue.error(e) from e

    def _stamp_now(self) -> object:
        """Never the same twice: the table is read again every interval (one small query)."""
        return object()

    def _read_all(self) -> dict[str, ApiKey]:
        import psycopg

        try:
            rows = self._execute(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE}").fetchall()
        except psycopg.errors.UndefinedTable:
            return {}  # no key was ever made
        try:
            return {str(row[0]): checked_key(dict(zip(_COLUMNS, row, strict=True))) for row in rows}
        except (ValueError, TypeError) as e:
            raise ApiKeyError(f"{self.where} holds an unusable key ({e}); fix or delete that row") from e

    def _put(self, rec: ApiKey) -> None:
        try:
            if rec.revoked_at is None:  # a new key: never over another's (two hosts drawing the same id)
                self._execute(_CREATE)
                added = self._execute(f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s) "
                                      "ON CONFLICT (id) DO NOTHING",
                                      (rec.id, rec.name, rec.scope, rec.sha256, rec.created_at, rec.revoked_at))
                if added.rowcount != 1:
                    raise ApiKeyError(f"API key id {rec.id} was just taken by another host; run the command again")
            else:
                self._execute(f"UPDATE {TABLE} SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                              (rec.revoked_at, rec.id))
        except LibraryError as e:
            raise ApiKeyError(f"cannot store the API key in {self.where}: {e}") from e
        self._keys = {**self._keys, rec.id: rec}


def open_keys(library: str | os.PathLike[str], keys_file: Path | None = None) -> KeyStore:
    """The API keys of the service of ``library``: ``keys_file`` when given; else those of a shared library's
    catalogue (every replica sees the same keys), or ``service-keys.json`` in a library directory."""
    if keys_file is not None:
        return KeyStore(keys_file)
    if is_postgres_url(str(library)):
        return CatalogueKeyStore(str(library))
    return KeyStore(Path(library) / "service-keys.json")


__all__ = ["TABLE", "CatalogueKeyStore", "open_keys"]
