"""What a similarity index reads from and writes to the catalogue: the voices' speaker embeddings with their
normalisation statistics, the changes since a given point, and the cohorts.

Every voice row that is inserted, deleted, renamed, re-embedded or re-normalised leaves its id in
``vector_log`` (by trigger, in the same transaction), so an index in any process catches up by reading the ids
logged after the last sequence number it saw: the work is the number of changes, not the number of voices.
Pure SQL and numpy (no torch).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..chatterbox import SPEAKER_EMB_DIM, XVECTOR_DIM
from .catalogue import Catalogue
from .records import vec

_ROW_SQL = ("SELECT id, name, speaker_emb, norm_mean, norm_std, norm_cohort FROM voices "
            "WHERE speaker_emb IS NOT NULL")
_BATCH = 500
"""Ids per ``IN (...)`` query (SQLite allows 999 parameters by default)."""


@dataclass(frozen=True)
class VectorRows:
    """Voices with a speaker embedding: ``ids`` (n,) int64, ``names``, ``vectors`` (n, 256) float32 as stored,
    ``means``/``stds`` (n,) float64 (NaN where none is stored) and ``cohorts`` (n,) int64 (-1: none)."""

    ids: np.ndarray
    names: list[str]
    vectors: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    cohorts: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class CohortRecord:
    """A stored cohort: ``vectors`` (N, 256) float32 unit rows of different speakers, the weights fingerprint of
    its built-in part (``""``: none), the number of library voices when it was built, and the statistics'
    parameters."""

    id: int
    fingerprint: str
    library_size: int
    vectors: np.ndarray
    exclude_above: float | None
    top_k: int


def _rows(records: Iterable[sqlite3.Row]) -> VectorRows:
    ids, names, vecs, means, stds, cohorts = [], [], [], [], [], []
    for r in records:
        raw = r["speaker_emb"]
        if not isinstance(raw, bytes) or len(raw) != 4 * SPEAKER_EMB_DIM or not isinstance(r["name"], str):
            continue  # a damaged row is `library check`'s to report; a search skips it
        ids.append(int(r["id"]))
        names.append(str(r["name"]))
        vecs.append(raw)
        means.append(r["norm_mean"] if isinstance(r["norm_mean"], float) else np.nan)
        stds.append(r["norm_std"] if isinstance(r["norm_std"], float) else np.nan)
        cohorts.append(int(r["norm_cohort"]) if isinstance(r["norm_cohort"], int) else -1)
    matrix = np.frombuffer(b"".join(vecs), dtype=np.float32).reshape(len(vecs), SPEAKER_EMB_DIM).copy()
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():  # never rank a vector of NaN or infinities
        keep = np.flatnonzero(~bad)
        return VectorRows(np.asarray(ids, dtype=np.int64)[keep], [names[i] for i in keep], matrix[keep],
                          np.asarray(means, dtype=np.float64)[keep], np.asarray(stds, dtype=np.float64)[keep],
                          np.asarray(cohorts, dtype=np.int64)[keep])
    return VectorRows(np.asarray(ids, dtype=np.int64), names, matrix, np.asarray(means, dtype=np.float64),
                      np.asarray(stds, dtype=np.float64), np.asarray(cohorts, dtype=np.int64))


def last_change(conn: sqlite3.Connection) -> int:
    """The sequence number of the newest logged change (0: none)."""
    return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM vector_log").fetchone()[0])


def all_rows(conn: sqlite3.Connection, *, chunk: int = 50_000) -> Iterator[VectorRows]:
    """Every voice with a speaker embedding, by id, ``chunk`` voices at a time (so reading 10^6 of them never holds
    more than a chunk's rows as Python objects)."""
    cursor = conn.execute(_ROW_SQL + " ORDER BY id")
    while records := cursor.fetchmany(chunk):
        yield _rows(records)


def rows_by_id(conn: sqlite3.Connection, ids: Sequence[int]) -> VectorRows:
    """The voices among ``ids`` that exist and have a speaker embedding, by id."""
    found: list[sqlite3.Row] = []
    for start in range(0, len(ids), _BATCH):
        part = [int(i) for i in ids[start:start + _BATCH]]
        found += conn.execute(_ROW_SQL + f" AND id IN ({','.join('?' * len(part))})", part).fetchall()
    return _rows(sorted(found, key=lambda r: int(r["id"])))


def xvectors_by_name(conn: sqlite3.Connection, names: Sequence[str]) -> dict[str, np.ndarray | None]:
    """The (192,) x-vectors of the voices among ``names`` that exist (``None``: the voice has none, or it is
    malformed), in one query per :data:`_BATCH` names rather than a read per voice."""
    out: dict[str, np.ndarray | None] = {}
    for start in range(0, len(names), _BATCH):
        part = [str(n) for n in names[start:start + _BATCH]]
        for row in conn.execute(f"SELECT name, xvector FROM voices WHERE name IN ({','.join('?' * len(part))})",
                                part):
            out[str(row[0])] = vec(row[1], XVECTOR_DIM)
    return out


def changed_since(conn: sqlite3.Connection, seq: int, *, limit: int) -> tuple[int, list[int] | None]:
    """``(newest sequence number, ids of the voices changed after seq)``; the ids are ``None`` when more than
    ``limit`` changes are logged (reading everything again is then cheaper)."""
    newest = last_change(conn)
    if newest <= seq:
        return newest, []
    if newest - seq > limit:
        return newest, None
    ids = [int(r[0]) for r in conn.execute("SELECT DISTINCT voice_id FROM vector_log WHERE seq > ? AND seq <= ?",
                                           (seq, newest))]
    return newest, ids


def tagged_ids(conn: sqlite3.Connection, tag: str) -> np.ndarray:
    """Ids of the voices tagged ``tag``, sorted."""
    return np.asarray(sorted(int(r[0]) for r in conn.execute("SELECT voice_id FROM tags WHERE tag = ?", (tag,))),
                      dtype=np.int64)


RARE_TAG = 2_000
"""A tag held by at most this many voices is listed from the tag index rather than by walking the names."""


def rare_tag(catalogue: Catalogue, tag: str) -> bool:
    """Whether at most :data:`RARE_TAG` voices have ``tag`` (at most that many index steps to find out)."""
    with catalogue.read() as conn:
        return int(conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM tags WHERE tag = ? LIMIT ?) AS tagged",
                                (tag, RARE_TAG + 1)).fetchone()[0]) <= RARE_TAG


def voice_count(conn: sqlite3.Connection) -> int:
    """How many voices have a speaker embedding."""
    return int(conn.execute("SELECT COUNT(*) FROM voices WHERE speaker_emb IS NOT NULL").fetchone()[0])


def latest_cohort(conn: sqlite3.Connection) -> CohortRecord | None:
    """The newest stored cohort, or ``None``."""
    r = conn.execute("SELECT * FROM cohorts ORDER BY id DESC LIMIT 1").fetchone()
    if r is None:
        return None
    raw = r["vectors"]
    if not isinstance(raw, bytes) or not raw or len(raw) % (4 * SPEAKER_EMB_DIM):
        return None  # damaged: built again on the next write
    vectors = np.frombuffer(raw, dtype=np.float32).reshape(-1, SPEAKER_EMB_DIM).copy()
    if not np.isfinite(vectors).all():
        return None
    return CohortRecord(int(r["id"]), str(r["fingerprint"]), int(r["library_size"]), vectors,
                        None if r["exclude_above"] is None else float(r["exclude_above"]), int(r["top_k"]))


def save_cohort(catalogue: Catalogue, *, fingerprint: str, library_size: int, vectors: np.ndarray,
                exclude_above: float | None, top_k: int, stats: tuple[np.ndarray, np.ndarray, np.ndarray],
                created_at: str) -> int:
    """Store a new cohort and the statistics ``(ids, means, stds)`` of the voices computed against it, in one
    transaction; older cohorts are dropped.  Returns the cohort's id."""
    with catalogue.write() as conn:
        cur = conn.execute("INSERT INTO cohorts (fingerprint, library_size, vectors, exclude_above, top_k, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (fingerprint, int(library_size), np.ascontiguousarray(vectors, dtype=np.float32).tobytes(),
                            exclude_above, int(top_k), created_at))
        cohort_id = int(cur.lastrowid or 0)
        conn.execute("DELETE FROM cohorts WHERE id < ?", (cohort_id,))
        _write_stats(conn, cohort_id, *stats)
    return cohort_id


def save_stats(catalogue: Catalogue, cohort_id: int, ids: np.ndarray, means: np.ndarray, stds: np.ndarray) -> None:
    """Store voices' statistics against cohort ``cohort_id`` (skipped if that cohort has been replaced)."""
    with catalogue.write() as conn:
        if conn.execute("SELECT 1 FROM cohorts WHERE id = ?", (int(cohort_id),)).fetchone() is not None:
            _write_stats(conn, cohort_id, ids, means, stds)


def _write_stats(conn: sqlite3.Connection, cohort_id: int, ids: np.ndarray, means: np.ndarray,
                 stds: np.ndarray) -> None:
    conn.executemany("UPDATE voices SET norm_mean = ?, norm_std = ?, norm_cohort = ? WHERE id = ?",
                     [(float(m), float(s), int(cohort_id), int(i)) for i, m, s in zip(ids, means, stds, strict=True)])


__all__ = ["CohortRecord", "VectorRows", "all_rows", "changed_since", "last_change", "latest_cohort", "rows_by_id",
           "save_cohort", "save_stats", "tagged_ids", "voice_count"]
