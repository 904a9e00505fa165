"""Pages of the voice list, filtered by the catalogue's own SQL, whose cost never grows with the library.

A page walks the catalogue's name index from its cursor (``after``) and stops after ``limit + 1`` matches or
:data:`SCAN_ROWS` examined names, whichever comes first: a rare filter (a name fragment or tag that few voices
have) answers a short page with a cursor to go on from, never a scan of every voice.  A name *prefix* narrows the
walk to its range of the index; a tag held by at most :data:`SMALL_TAG` voices is read from the tag index
instead (all its voices, sorted: at most that many rows).  What the page shows of each voice is then read by
name, one voice at a time.  A voice not found is answered with close names from its neighbours in the index,
not by comparing it with every name.

The queries use the catalogue's read connection and the store's schema (``voices``, ``tags`` and their
indexes); nothing here writes.
"""

from __future__ import annotations

import logging
import sqlite3
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import LibraryError, VoiceNotFoundError
from ..library import Library, VoiceInfo
from ..store.guard import close_names

log = logging.getLogger(__name__)

SCAN_ROWS = 5_000
"""The most names of the index one page examines (a filter matching fewer than one in 50 voices may then answer
a short page, with ``has_more`` and a cursor)."""
SMALL_TAG = 2_000
"""A tag held by at most this many voices may be paged from the tag index (its voices sorted by name)."""
MAX_TAGS = 200
"""The most distinct tags :func:`tags` lists."""


@dataclass(frozen=True)
class Filter:
    """What a page keeps: names starting with ``prefix`` (exact), names containing ``contains`` (any case), voices
    tagged ``tag``, voices in ``mode``; ``None`` keeps all."""

    prefix: str | None = None
    contains: str | None = None
    tag: str | None = None
    mode: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", _nfc(self.prefix) or None)
        object.__setattr__(self, "contains", (_nfc(self.contains) or "").casefold() or None)


@dataclass(frozen=True)
class Page:
    """The names of one page, whether there may be more, and the cursor (``after``) of the next page: the last
    name examined, which is past the last shown when the walk stopped at :data:`SCAN_ROWS`."""

    names: list[str]
    has_more: bool
    next_after: str | None
    examined: int


def _nfc(text: str | None) -> str | None:
    return unicodedata.normalize("NFC", text) if text is not None else None


def _successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (in SQLite's byte order, which is
    code point order), or ``None`` when there is none."""
    chars = list(prefix)
    while chars:
        c = ord(chars.pop()) + 1
        if c == 0xD800:
            c = 0xE000  # surrogates are no characters of a UTF-8 string
        if c <= 0x10FFFF:
            return "".join(chars) + chr(c)
    return None


def _walk(conn: sqlite3.Connection, f: Filter, after: str | None, scan: int) -> Iterator[tuple[str, str, bool]]:
    """``(name, mode, tagged)`` of the names after ``after`` (in the prefix's range), in order, at most ``scan``."""
    where, args = [], list[object]()
    if after is not None:
        where.append("name > ?")
        args.append(after)
    if f.prefix is not None:
        where.append("name >= ?")
        args.append(f.prefix)
        hi = _successor(f.prefix)
        if hi is not None:
            where.append("name < ?")
            args.append(hi)
    tagged = "EXISTS (SELECT 1 FROM tags WHERE tags.voice_id = voices.id AND tags.tag = ?)" if f.tag else "1"
    mode = "mode" if f.mode else "''"  # reading the mode leaves the name index for the table: only when asked
    sql = (f"SELECT name, {mode}, {tagged} FROM voices"
           f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY name LIMIT ?")
    cursor = conn.execute(sql, ([f.tag] if f.tag else []) + args + [scan])
    while rows := cursor.fetchmany(256):
        for name, m, t in rows:
            yield str(name), str(m), bool(t)


def _tag_rows(conn: sqlite3.Connection, f: Filter, after: str | None, limit: int,
              ) -> list[tuple[str, str, bool]] | None:
    """Every voice tagged ``f.tag`` after ``after`` by name, read from the tag index, when that is the cheaper
    way: the tag has at most :data:`SMALL_TAG` voices and so few that walking the name index would examine more
    names (about ``limit`` x voices / tagged) than the tag has voices; else ``None`` (the name index is walked)."""
    assert f.tag is not None
    held = int(conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM tags WHERE tag = ? LIMIT ?)",
                            (f.tag, SMALL_TAG + 1)).fetchone()[0])
    last = conn.execute("SELECT id FROM voices ORDER BY id DESC LIMIT 1").fetchone()  # about how many voices
    if held > SMALL_TAG or held * held > (limit + 1) * int(last[0] if last else 0):
        return None
    sql = "SELECT v.name, v.mode FROM tags t JOIN voices v ON v.id = t.voice_id WHERE t.tag = ?"
    args: list[object] = [f.tag]
    if after is not None:
        sql += " AND v.name > ?"
        args.append(after)
    return [(str(n), str(m), True) for n, m in conn.execute(sql + " ORDER BY v.name", args)]


def _keeps(f: Filter, name: str, mode: str, tagged: bool) -> bool:
    return (tagged and (f.prefix is None or name.startswith(f.prefix))
            and (f.contains is None or f.contains in name.casefold()) and (f.mode is None or mode == f.mode))


def page_names(library: Library, f: Filter, *, limit: int, after: str | None = None,
               scan: int = SCAN_ROWS) -> Page:
    """The names of the page of at most ``limit`` voices kept by ``f`` after ``after``, by name."""
    after = _nfc(after)
    with library.catalogue.read() as conn:
        rows = _tag_rows(conn, f, after, limit) if f.tag else None
        exhaustive = rows is not None  # every candidate is in rows: the walk cannot stop short
        source = iter(rows) if rows is not None else _walk(conn, f, after, scan)
        names: list[str] = []
        examined, last = 0, after
        for name, mode, tagged in source:
            examined += 1
            last = name
            if _keeps(f, name, mode, tagged):
                if len(names) == limit:  # one more match: there is a next page, from the last shown
                    return Page(names, True, names[-1], examined)
                names.append(name)
        if exhaustive or examined < scan:
            return Page(names, False, None, examined)
        return Page(names, True, last, examined)  # stopped at the scan limit: go on from the last name examined


def infos(library: Library, names: list[str]) -> list[VoiceInfo]:
    """What the library holds about each of ``names`` (a voice removed meanwhile, or a damaged row, is left out;
    the latter with a warning, as the library's own list does)."""
    out = []
    for name in names:
        try:
            out.append(library.show(name))
        except VoiceNotFoundError:
            continue
        except LibraryError as e:
            log.warning("skipped voice %r: %s", name[:60], e)
    return out


def count(library: Library, tag: str | None = None) -> int:
    """How many voices there are (with ``tag``): a count over an index, no rows read."""
    with library.catalogue.read() as conn:
        if tag is None:
            return int(conn.execute("SELECT COUNT(*) FROM voices").fetchone()[0])
        return int(conn.execute("SELECT COUNT(*) FROM tags WHERE tag = ?", (tag,)).fetchone()[0])


def tags(library: Library, *, limit: int = MAX_TAGS) -> list[str]:
    """The distinct tags, sorted, at most ``limit``: one step of the tag index per tag, however many voices hold
    each."""
    sql = ("WITH RECURSIVE t(tag) AS (SELECT MIN(tag) FROM tags UNION ALL "
           "SELECT (SELECT MIN(tag) FROM tags WHERE tag > t.tag) FROM t WHERE t.tag IS NOT NULL) "
           "SELECT tag FROM t WHERE tag IS NOT NULL LIMIT ?")
    with library.catalogue.read() as conn:
        return [str(r[0]) for r in conn.execute(sql, (limit,))]


def suggest(library: Library, name: str, *, n: int = 3) -> list[str]:
    """Up to ``n`` stored names close to ``name`` (a missing one), from its neighbours in the name index
    (:func:`voicebank.store.guard.close_names`): a few indexed lookups, however many voices there are."""
    with library.catalogue.read() as conn:
        return close_names(conn, _nfc(name) or "", n=n)


def not_found(library: Library, name: str) -> VoiceNotFoundError:
    """The error of a missing voice, with close names (:func:`suggest`)."""
    close = suggest(library, name)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see `voicebank list`"
    return VoiceNotFoundError(f"no voice named {_nfc(name)!r}{hint}")


__all__ = ["Filter", "Page", "count", "infos", "not_found", "page_names", "suggest", "tags"]
