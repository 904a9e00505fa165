"""The store's SQL on PostgreSQL: the few SQLite idioms the store speaks, translated, so one store runs on both.

The store writes SQLite's SQL (``?`` placeholders, ``INSERT OR REPLACE`` / ``INSERT OR IGNORE``, a cursor's
``lastrowid``, ``PRAGMA user_version``) and reads rows by column name and by position (``sqlite3.Row``).
:class:`PgConnection` wraps a psycopg 3 connection with that subset of ``sqlite3.Connection``'s interface:

* ``?`` outside quotes becomes ``%s`` (and a literal ``%`` becomes ``%%``);
* ``INSERT OR REPLACE INTO t`` becomes ``INSERT INTO t ... ON CONFLICT (key) DO UPDATE SET`` every other column
  (the keys are :data:`CONFLICT_KEYS`), ``INSERT OR IGNORE`` becomes ``... ON CONFLICT DO NOTHING``;
* ``INSERT INTO`` a table with an ``id`` (:data:`ID_TABLES`) gets ``RETURNING id``, read back as ``lastrowid``;
* ``PRAGMA user_version`` reads and sets the version in ``voicebank_meta``.

Rows are :class:`Row`: a tuple (iterate, unpack, index) that is also indexed by column name, with ``keys()``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

CONFLICT_KEYS = {"blobs": ("sha256",), "voice_files": ("voice_id", "role", "variant"), "tags": ("voice_id", "tag")}
"""The unique key an ``INSERT OR REPLACE`` into each table replaces on (SQLite's primary keys)."""
ID_TABLES = frozenset({"voices", "cohorts"})
"""Tables whose rows get a generated ``id`` (``lastrowid``)."""

_INSERT = re.compile(r"^\s*INSERT\s+(?:OR\s+(REPLACE|IGNORE)\s+)?INTO\s+(\w+)\s*\(([^)]*)\)", re.I | re.S)
_PRAGMA_VERSION = re.compile(r"^\s*PRAGMA\s+user_version\s*(?:=\s*(\d+))?\s*;?\s*$", re.I)


class Row(tuple):
    """A result row: a tuple that is also indexed by column name (``row["name"]``), like ``sqlite3.Row``."""

    _names: tuple[str, ...]
    _index: dict[str, int]

    def __new__(cls, names: tuple[str, ...], index: dict[str, int], values: Sequence[Any]) -> Row:
        row = super().__new__(cls, values)
        row._names, row._index = names, index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._index[key])
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    names = tuple(d.name for d in cursor.description or ())
    index = {n: i for i, n in enumerate(names)}

    def make(values: Sequence[Any]) -> Row:
        return Row(names, index, values)

    return make


def _placeholders(sql: str) -> str:
    """``?`` to ``%s`` and ``%`` to ``%%``, outside quoted strings and identifiers."""
    out, quote = [], ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
            out.append("%%" if ch == "%" else ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=512)
def translate(sql: str, *, many: bool = False) -> tuple[str, bool]:
    """``(PostgreSQL statement, whether it returns the new row's id)`` for one of the store's SQLite statements."""
    version = _PRAGMA_VERSION.match(sql)
    if version is not None:
        if version.group(1) is None:
            return "SELECT version FROM voicebank_meta", False
        return f"UPDATE voicebank_meta SET version = {int(version.group(1))}", False
    if re.match(r"^\s*PRAGMA\b", sql, re.I):
        raise ValueError(f"no PostgreSQL equivalent for {sql.strip()!r}")
    out = _placeholders(sql).rstrip().rstrip(";")
    returns_id = False
    insert = _INSERT.match(sql)
    if insert is not None:
        verb, table = (insert.group(1) or "").upper(), insert.group(2).lower()
        out = re.sub(r"^\s*INSERT\s+OR\s+(REPLACE|IGNORE)\s+INTO", "INSERT INTO", out, count=1, flags=re.I)
        if verb == "IGNORE":
            out += " ON CONFLICT DO NOTHING"
        elif verb == "REPLACE":
            keys = CONFLICT_KEYS.get(table)
            if keys is None:
                raise ValueError(f"INSERT OR REPLACE into {table}: no conflict key known (add it to CONFLICT_KEYS)")
            columns = [c.strip() for c in insert.group(3).split(",")]
            rest = [c for c in columns if c not in keys]
            out += f" ON CONFLICT ({', '.join(keys)}) " + (
                "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest) if rest else "DO NOTHING")
        if table in ID_TABLES and not many and not re.search(r"\bRETURNING\b", out, re.I):
            out += " RETURNING id"
            returns_id = True
    return out, returns_id


class Result:
    """What :meth:`PgConnection.execute` returns: the rows (``fetchone``, ``fetchmany``, ``fetchall``,
    iteration), ``lastrowid`` of an insert and ``rowcount``."""

    def __init__(self, cursor: Any, returns_id: bool) -> None:
        self._cursor = cursor
        self.rowcount: int = cursor.rowcount
        self.lastrowid: int | None = None
        if returns_id:
            row = cursor.fetchone()
            self.lastrowid = int(row[0]) if row is not None else None

    def fetchone(self) -> Row | None:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Row]:
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchmany(self, size: int = 1) -> list[Row]:
        return self._cursor.fetchmany(size) if self._cursor.description else []

    def __iter__(self) -> Iterator[Row]:
        while rows := self.fetchmany(256):
            yield from rows


class PgConnection:
    """A psycopg 3 connection that speaks the store's SQLite-flavoured SQL (see the module's docstring)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        """The psycopg connection underneath (for PostgreSQL-only statements: ``raw.execute``)."""

    def execute(self, sql: str, args: Sequence[Any] | None = None) -> Result:
        statement, returns_id = translate(sql)
        cursor = self.raw.cursor(row_factory=_row_factory)
        cursor.execute(statement, tuple(args or ()))  # always parameters: '%%' in the statement then means '%'
        return Result(cursor, returns_id)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Result:
        statement, _ = translate(sql, many=True)
        rows = [tuple(r) for r in rows]
        cursor = self.raw.cursor(row_factory=_row_factory)
        if rows:
            cursor.executemany(statement, rows)
        return Result(cursor, False)


__all__ = ["CONFLICT_KEYS", "ID_TABLES", "PgConnection", "Result", "Row", "translate"]
