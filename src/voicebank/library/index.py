""":class:`VoiceIndex`: the library's speaker embeddings in memory, for searches and duplicate checks whose cost
does not grow with what has to be re-read.

The index loads every speaker embedding once (one query), then catches up with any process's writes by reading
only the voices logged as changed since (``vector_log``, see :mod:`voicebank.store.vectors`).  Rows live in
buffers that grow by doubling; a deleted or changed voice's old row is marked dead and its new row appended,
and the buffers are compacted when dead rows pile up, so an update costs the number of changes (amortised).

Each row carries its normalisation statistics (mean and standard deviation of its top cohort cosines, see
:class:`~voicebank.similarity.ScoreNormaliser`) against the library's current cohort, as stored in the
catalogue; rows computed against another cohort are brought up to date in memory by :meth:`VoiceIndex.normalise`.

From the approximate index's size on, rows are kept as bfloat16 (:mod:`.bfloat16`, half the memory); the rows a
search keeps are scored from the catalogue's float32 vectors, so results do not depend on the layout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..chatterbox import SPEAKER_EMB_DIM
from ..errors import MissingDependencyError
from ..settings import Settings
from ..store.store import VoiceStore
from ..store.vectors import (
    VectorRows,
    all_rows,
    changed_since,
    last_change,
    rows_by_id,
    tagged_ids,
)
from . import ann, bfloat16
from .neighbours import Neighbours
from .packed import PackedNames
from .ranked import Ranked, cosines64, top_candidates, unit_rows

MIN_CAPACITY = 256


class VoiceIndex:
    """The speaker embeddings of a library's voices, kept current with the catalogue (thread-safe).

    ``rows_read`` counts the voice rows read from the catalogue (for tests and benchmarks): the first use reads
    every voice, each later :meth:`refresh` only the voices changed since.

    ``ann_from``: from this many voices on, searches without a tag and duplicate checks take their candidates
    from an approximate index (:mod:`.neighbours`; 0: never; ``None``: the ``VOICEBANK_ANN`` setting, by default
    :data:`~.ann.ANN_FROM` when usearch is installed).
    """

    def __init__(self, store: VoiceStore, *, ann_from: int | None = None) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._seq = -1  # nothing loaded yet
        self._size = 0
        self._ids = np.zeros(0, dtype=np.int64)
        self._names = PackedNames()
        self._unit = np.zeros((0, SPEAKER_EMB_DIM), dtype=np.float32)  # bfloat16 bits (uint16) when _bf16
        self._bf16 = False
        self._gain_max = 0.0
        self._means = np.zeros(0)
        self._stds = np.zeros(0)
        self._cohort = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._gain = np.zeros(0, dtype=np.float32)  # 0.5 / std, per row: a score is one multiply-add per row
        self._offset = np.zeros(0, dtype=np.float32)  # -0.5 * mean / std; -inf for dead rows and rows without
        self._row_of: dict[int, int] = {}
        self._checked: tuple[int | None, int] = (None, 0)  # (cohort, rows) whose statistics normalise() checked
        self.rows_read = 0
        self.rows_rescored = 0
        self.neighbours = self._neighbours(store, Settings.from_env().ann_from if ann_from is None else ann_from)

    def _neighbours(self, store: VoiceStore, ann_from: int | None) -> Neighbours | None:
        if ann_from == 0 or (ann_from is None and not ann.available()):
            return None
        if not ann.available():
            raise MissingDependencyError(f"VOICEBANK_ANN={ann_from} asks for the approximate index, which needs "
                                         "usearch: pip install 'voicebank[ann]'")
        cache = getattr(store, "cache_dir", None)
        return Neighbours(self, self._lock, cache if isinstance(cache, Path) else None,
                          ann.ANN_FROM if ann_from is None else ann_from, store.catalogue)

    def __len__(self) -> int:
        with self._lock:
            return len(self._row_of)

    @property
    def bf16(self) -> bool:
        """Whether the rows are kept as bfloat16 (half the memory; from the approximate index's size on, see
        :mod:`.bfloat16`).  Scores are float32 either way: the rows a search keeps are read again from the
        catalogue (counted in ``rows_rescored``)."""
        return self._bf16

    @property
    def seq(self) -> int:
        """The ``vector_log`` sequence number the index reflects (-1: nothing loaded yet)."""
        return self._seq

    def live(self, *, as_kept: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, unit vectors)`` of every live voice, in row order (copies; float32 to bfloat16 precision when
        :attr:`bf16`; ``as_kept``: the rows as kept, bfloat16 bit patterns when :attr:`bf16`, a copy half the
        size)."""
        with self._lock:
            rows = np.flatnonzero(self._alive[: self._size])
            return self._ids[rows].copy(), self._unit[rows] if as_kept else self._f32(rows)

    def live_ids(self) -> np.ndarray:
        """The ids of every live voice, in row order (a copy)."""
        with self._lock:
            return self._ids[np.flatnonzero(self._alive[: self._size])].copy()

    def rows_for(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, unit vectors)`` of the live voices among ``ids`` (to bfloat16 precision when :attr:`bf16`)."""
        with self._lock:
            rows = np.array([r for i in ids if (r := self._row_of.get(int(i))) is not None], dtype=np.int64)
            return self._ids[rows].copy(), self._f32(rows)

    def _f32(self, rows: np.ndarray) -> np.ndarray:
        """The unit vectors of ``rows`` (a copy), float32 (to bfloat16 precision when :attr:`bf16`)."""
        return bfloat16.from_bf16(self._unit[rows]) if self._bf16 else self._unit[rows]

    def _exact_rows(self, rows: np.ndarray) -> np.ndarray:
        """The float32 unit vectors of ``rows``: as kept, or (:attr:`bf16`) read again from the catalogue (one
        query per 500 rows; a voice changed or removed since the last refresh keeps its row as kept)."""
        if not self._bf16:
            return self._unit[rows]
        out = self._f32(rows)
        ids = self._ids[rows]
        if ids.size:
            with self._store.catalogue.read() as conn:
                got = rows_by_id(conn, ids.tolist())
            self.rows_rescored += len(got)
            if len(got):
                found = np.asarray(got.ids, dtype=np.int64)
                at = np.searchsorted(found, ids).clip(0, found.size - 1)
                hit = found[at] == ids
                out[hit] = unit_rows(got.vectors)[at[hit]]
        return out

    # --- keeping current -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read what changed in the catalogue since the last look (everything, the first time)."""
        with self._lock, self._store.catalogue.read() as conn:
            if self._seq < 0:
                seq, ids = last_change(conn), None
                self._load(all_rows(conn), voices(conn))
            else:
                seq, ids = changed_since(conn, self._seq, limit=max(1_000, len(self._row_of) // 2))
                if ids is None:
                    self._load(all_rows(conn), voices(conn))
                elif ids:
                    self._apply(ids, rows_by_id(conn, ids))
            self._seq = seq
            if self.neighbours is not None and (ids is None or ids or self.neighbours.graph is None):
                self.neighbours.follow(conn, seq, ids)

    def catch_up(self) -> None:
        """Read the latest changes now when an approximate index follows this one, so that its graph takes them
        on a background thread while the caller goes on (as after an add); otherwise leave them to the next use."""
        if self._seq >= 0 and self.neighbours is not None and self.neighbours.graph is not None:
            self.refresh()

    def _load(self, chunks: Iterable[VectorRows], expected: int) -> None:
        """Every row afresh, from chunks (``expected``: about how many rows, to size the buffers once)."""
        self._size = 0
        self._checked = (None, 0)
        self._row_of = {}
        for attr in ("_ids", "_unit", "_means", "_stds", "_cohort", "_alive", "_gain", "_offset"):
            old = getattr(self, attr)  # let the old buffers go before the new ones are filled
            setattr(self, attr, np.zeros((0, *old.shape[1:]), dtype=old.dtype))
        self._reserve(expected)
        for rows in chunks:
            self.rows_read += len(rows)
            self._reserve(self._size + len(rows))
            self._append(rows)

    def _apply(self, ids: list[int], rows: VectorRows) -> None:
        self.rows_read += len(rows)
        for i in ids:  # a changed voice's old row goes; its new row (if it still has an embedding) comes back
            row = self._row_of.pop(int(i), None)
            if row is not None:
                self._alive[row] = False
                self._offset[row] = -np.inf
        self._reserve(self._size + len(rows))
        self._append(rows)
        if self._size > 2 * max(MIN_CAPACITY, len(self._row_of)):
            self._compact()

    def _reserve(self, n: int) -> None:
        if not self._bf16 and self.neighbours is not None and n >= self.neighbours.ann_from:
            self._unit = bfloat16.to_bf16(self._unit)  # from the graph's size on: half the memory (once)
            self._bf16 = True
        capacity = self._ids.shape[0]
        if n <= capacity:
            return
        new = max(MIN_CAPACITY, n + n // 64, capacity + capacity // 4)  # amortised O(1), at most 1.25x the rows

        def grow(a: np.ndarray) -> np.ndarray:
            out = np.zeros((new, *a.shape[1:]), dtype=a.dtype)
            out[: self._size] = a[: self._size]
            return out

        self._ids, self._unit, self._means = grow(self._ids), grow(self._unit), grow(self._means)
        self._stds, self._cohort, self._alive = grow(self._stds), grow(self._cohort), grow(self._alive)
        self._gain, self._offset = grow(self._gain), grow(self._offset)

    def _append(self, rows: VectorRows) -> None:
        start, n = self._size, len(rows)
        end = start + n
        self._ids[start:end] = rows.ids
        unit = unit_rows(rows.vectors)
        self._unit[start:end] = bfloat16.to_bf16(unit) if self._bf16 else unit
        self._means[start:end] = rows.means
        self._stds[start:end] = rows.stds
        self._cohort[start:end] = rows.cohorts
        self._alive[start:end] = True
        self._set_affine(np.arange(start, end))
        self._names.truncate(start)
        self._names.extend(rows.names)
        self._row_of.update(zip(np.asarray(rows.ids).tolist(), range(start, end), strict=True))
        self._size = end

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[: self._size])
        self._ids[: keep.size] = self._ids[keep]
        self._unit[: keep.size] = self._unit[keep]
        self._means[: keep.size] = self._means[keep]
        self._stds[: keep.size] = self._stds[keep]
        self._cohort[: keep.size] = self._cohort[keep]
        self._gain[: keep.size] = self._gain[keep]
        self._offset[: keep.size] = self._offset[keep]
        self._alive[: keep.size] = True
        self._alive[keep.size: self._size] = False
        self._names = self._names.take(keep)
        self._size = int(keep.size)
        self._row_of = {int(i): k for k, i in enumerate(self._ids[: self._size])}
        self._checked = (None, 0)

    def _set_affine(self, rows: np.ndarray) -> None:
        """Each row's normalised score as ``cos * (gain + 0.5 / s_q) + offset - 0.5 * m_q / s_q``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = 0.5 / self._stds[rows]
            offset = -self._means[rows] * gain
        usable = np.isfinite(gain) & np.isfinite(offset) & self._alive[rows]
        self._gain[rows] = np.where(usable, gain, 0.0)
        self._gain_max = max(self._gain_max, float(self._gain[rows].max(initial=0.0)))  # a bound, never lowered
        self._offset[rows] = np.where(usable, offset, -np.inf)

    # --- statistics --------------------------------------------------------------------------------------

    def vectors(self, limit: int | None = None) -> tuple[list[str], np.ndarray]:
        """``(names, float32 unit vectors (n, 256))`` of every voice sorted by name, or of ``limit`` of them
        evenly spaced in that order (:func:`~voicebank.cohort.select_cohort`'s choice): what a cohort is taken
        from."""
        with self._lock:
            rows = sorted(self._row_of.values(), key=lambda r: self._names[r])
            if limit is not None and len(rows) > limit:
                rows = [rows[k] for k in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
            picked = np.asarray(rows, dtype=np.int64)
            return [self._names[r] for r in rows], self._exact_rows(picked)

    def normalise(self, cohort_id: int, statistics: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bring every row's statistics up to cohort ``cohort_id``, computing the missing ones with
        ``statistics(unit vectors) -> (means, stds)``.  Returns ``(ids, means, stds)`` of the rows computed now,
        for the caller to store."""
        with self._lock:
            start = self._checked[1] if self._checked[0] == cohort_id else 0  # rows before it are up to date
            live = start + np.flatnonzero(self._alive[start: self._size])
            stale = live[self._cohort[live] != cohort_id]
            self._checked = (cohort_id, self._size)
            if stale.size == 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
            if self._bf16:  # from float32 rows, read again a chunk at a time
                parts = [statistics(self._exact_rows(stale[s: s + 65_536])) for s in range(0, stale.size, 65_536)]
                means, stds = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            else:
                means, stds = statistics(self._unit[stale])
            self._means[stale], self._stds[stale], self._cohort[stale] = means, stds, cohort_id
            self._set_affine(stale)
            return self._ids[stale].copy(), np.asarray(means), np.asarray(stds)

    def statistics(self, cohort_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, means, stds)`` of the rows whose statistics are against cohort ``cohort_id``."""
        with self._lock:
            live = np.flatnonzero(self._alive[: self._size])
            rows = live[self._cohort[live] == cohort_id]
            return self._ids[rows].copy(), self._means[rows].copy(), self._stds[rows].copy()

    def relabel(self, old: int, new: int) -> None:
        """Rows whose statistics are against cohort ``old`` are against ``new`` (the same cohort, now stored)."""
        with self._lock:
            rows = self._cohort[: self._size]
            rows[rows == old] = new
            if self._checked[0] == old:
                self._checked = (new, self._checked[1])

    # --- ranking -----------------------------------------------------------------------------------------

    def rank(self, query: np.ndarray, *, k: int, query_stats: tuple[float, float] | None = None,
             exclude: str = "", tag: str | None = None, at_least: float | None = None,
             also_if_cosine: float | None = None) -> Ranked:
        """The ``k`` best rows for a (256,) ``query``, best first.

        With ``query_stats`` (the query's cohort mean and std) rows are ranked by the normalised score
        ``((cos - m_q) / s_q + (cos - m_i) / s_i) / 2`` with each row's stored statistics (call
        :meth:`normalise` first); without, by raw cosine.  ``exclude``: a name left out; ``tag``: only voices
        with it; ``at_least``: only rows scoring at least this, or (``also_if_cosine``) with a raw cosine at
        least that.  One matrix-vector product over the index: its cost is the index's size, read from memory;
        or, from ``ann_from`` voices on and without a tag, the approximate index's nearest rows by cosine (at
        least :func:`~.ann.candidates_for` ``k``), scored the same way.
        """
        with self._lock:
            n = self._size
            q = unit_rows(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
            graph = self.neighbours.usable() if self.neighbours is not None and tag is None else None
            if graph is not None:
                rows = self._near(graph.search(q[None, :], ann.candidates_for(k))[0], query_stats, exclude)
                if self._bf16:  # the bfloat16 rows choose among the candidates, the float32 rows score
                    cos = self._f32(rows) @ q
                    rows = rows[self._keep(self._scores(rows, cos, query_stats), cos, query_stats, k=k,
                                           at_least=at_least, also_if_cosine=also_if_cosine)]
                return self._exact(rows, q, query_stats, k=k, at_least=at_least, also_if_cosine=also_if_cosine)
            sel: slice | np.ndarray = slice(0, n)  # every row; or those with the tag, read from the catalogue
            if tag is not None:
                with self._store.catalogue.read() as conn:
                    sel = np.flatnonzero(np.isin(self._ids[:n], tagged_ids(conn, tag)) & self._alive[:n])
            cos = self._cosines(sel, q)  # the one pass
            score = self._scores(sel, cos, query_stats)
            keep = self._keep(score, cos, query_stats, k=k, at_least=at_least, also_if_cosine=also_if_cosine)
            rows = self._without(sel[keep] if isinstance(sel, np.ndarray) else keep, exclude)  # k + 16 kept: k left
            return self._exact(rows, q, query_stats, k=k, at_least=at_least, also_if_cosine=also_if_cosine)

    def _cosines(self, rows: slice | np.ndarray, q: np.ndarray) -> np.ndarray:
        """float32 (or bfloat16) cosines of ``rows`` with a unit (256,) ``q``, a block at a time."""
        if self._bf16:
            return bfloat16.cosines(self._unit[rows] if isinstance(rows, slice) else self._unit, q,
                                    None if isinstance(rows, slice) else rows)
        if isinstance(rows, slice):
            return self._unit[rows] @ q
        return np.concatenate([self._unit[rows[s: s + 65_536]] @ q for s in range(0, rows.size, 65_536)]
                              or [np.zeros(0, dtype=np.float32)])

    def _scores(self, rows: slice | np.ndarray, cos: np.ndarray, query_stats: tuple[float, float] | None,
                ) -> np.ndarray:
        """float32 scores of ``rows`` from their cosines ``cos`` (-inf: dead, or no statistics to normalise)."""
        if query_stats is None:
            return np.where(self._alive[rows], cos, np.float32(-np.inf))
        mq, sq = float(query_stats[0]), float(query_stats[1])
        score = cos * (self._gain[rows] + np.float32(0.5 / sq))
        score += self._offset[rows]  # -inf: dead rows and rows without statistics
        score -= np.float32(0.5 * mq / sq)
        return score

    def _keep(self, score: np.ndarray, cos: np.ndarray, query_stats: tuple[float, float] | None, *, k: int,
              at_least: float | None, also_if_cosine: float | None) -> np.ndarray:
        """Positions in ``score`` that may be among the ``k`` best (or reach ``at_least``, or ``also_if_cosine``
        by cosine) once scored exactly: within float32 rounding, and within what :data:`~.bfloat16.COSINE_ERROR`
        moves a score when the cosines come from bfloat16 rows."""
        finite = np.isfinite(score)
        slack = 1e-3 * (1.0 + float(np.abs(score[finite]).max(initial=0.0)))
        cos_slack = 1e-3
        if self._bf16:
            cos_slack += bfloat16.COSINE_ERROR
            gain = 1.0 if query_stats is None else self._gain_max + 0.5 / float(query_stats[1])
            slack += bfloat16.COSINE_ERROR * gain
        if at_least is None:
            return top_candidates(score, k + 16, np.float32(slack))
        hit = score >= at_least - slack
        if also_if_cosine is not None:
            hit |= (cos >= also_if_cosine - cos_slack) & finite
        return np.flatnonzero(hit)

    def _near(self, ids: np.ndarray, query_stats: object, exclude: str = "") -> np.ndarray:
        """The rows of voice ``ids`` the approximate index returned, less those a search leaves out."""
        rows = np.array([r for i in ids.tolist() if (r := self._row_of.get(i)) is not None], dtype=np.int64)
        rows = rows[np.isfinite(self._offset[rows])] if query_stats is not None else rows[self._alive[rows]]
        return self._without(rows, exclude)

    def _without(self, rows: np.ndarray, exclude: str) -> np.ndarray:
        """``rows`` less the one named ``exclude`` (names compared for these rows only)."""
        if not exclude or not rows.size:
            return rows
        return rows[np.array([self._names[int(r)] != exclude for r in rows], dtype=bool)]

    def _exact(self, rows: np.ndarray, q: np.ndarray, query_stats: tuple[float, float] | None, *, k: int,
               at_least: float | None, also_if_cosine: float | None) -> Ranked:
        """The ``k`` best of a few candidate ``rows``, their cosines and scores computed in float64 from the
        float32 rows (the first pass only chose them), so every path gives a row the same score."""
        c = cosines64(self._exact_rows(rows), q)
        if query_stats is not None:
            mq, sq = query_stats
            score = 0.5 * ((c - mq) / sq + (c - self._means[rows]) / self._stds[rows])
        else:
            score = c
        keep = np.isfinite(score)
        if at_least is not None:
            hit = score >= at_least
            if also_if_cosine is not None:
                hit |= c >= also_if_cosine
            keep &= hit
        rows, score, c = rows[keep], score[keep], c[keep]
        order = np.lexsort((rows, -score))[:k]  # best first; ties in index order
        return Ranked([self._names[r] for r in rows[order]], score[order], c[order])

    def matches(self, queries: np.ndarray, *, query_stats: tuple[np.ndarray, np.ndarray] | None, at_least: float,
                also_if_cosine: float | None = None, k: int, block: int = 8_192) -> list[Ranked]:
        """For each of many (B, 256) ``queries``: the rows scoring at least ``at_least`` (or with a raw cosine
        of at least ``also_if_cosine``), best ``k`` first, as :meth:`rank` finds them for one query.

        ``query_stats``: ``(means (B,), stds (B,))`` of the queries for normalised scores (``None``: raw
        cosines).  One matrix product per block of ``block`` rows, so a chunk of queries costs one pass over
        the index rather than one per query; from ``ann_from`` voices on, each query's nearest rows from the
        approximate index instead, scored the same way."""
        q = unit_rows(np.asarray(queries, dtype=np.float32).reshape(-1, SPEAKER_EMB_DIM))
        hits: list[list[tuple[float, float, int]]] = [[] for _ in range(q.shape[0])]
        with self._lock:
            graph = self.neighbours.usable() if self.neighbours is not None else None
            if graph is not None:
                out = []
                for b, ids in enumerate(graph.search(q, ann.candidates_for(k))):
                    stats = None if query_stats is None else (float(query_stats[0][b]), float(query_stats[1][b]))
                    rows = self._near(ids, stats)
                    if self._bf16:
                        cos = self._f32(rows) @ q[b]
                        rows = rows[self._keep(self._scores(rows, cos, stats), cos, stats, k=k, at_least=at_least,
                                               also_if_cosine=also_if_cosine)]
                    out.append(self._exact(rows, q[b], stats, k=k, at_least=at_least, also_if_cosine=also_if_cosine))
                return out
            n = self._size
            mq = sq = None
            if query_stats is not None:
                mq, sq = (np.asarray(a, dtype=np.float64) for a in query_stats)
            # float32 (or bfloat16) first, then the few rows near the cut-off scored again as rank() scores them
            slack = 1e-3 + (bfloat16.COSINE_ERROR if self._bf16 else 0.0)
            near: list[tuple[int, int, float]] = []  # (row, query, loose cosine)
            for start in range(0, n, block):
                end = min(n, start + block)
                part = self._unit[start:end]
                cos32 = bfloat16.cosines(part, q.T) if self._bf16 else part @ q.T  # (rows, B)
                if mq is not None and sq is not None:
                    mi, si = self._means[start:end, None], self._stds[start:end, None]
                    loose = 0.5 * ((cos32 - mq[None, :].astype(np.float32)) / sq[None, :].astype(np.float32)
                                   + (cos32 - mi.astype(np.float32)) / si.astype(np.float32))
                    slack_score = slack * float(np.max(0.5 / sq) + np.max(0.5 / si)) if si.size else slack
                else:
                    loose, slack_score = cos32, slack
                hit = loose >= at_least - slack_score
                if also_if_cosine is not None:
                    hit |= cos32 >= also_if_cosine - slack
                hit &= self._alive[start:end, None]
                near += [(start + int(r), int(b), float(cos32[r, b])) for r, b in zip(*np.nonzero(hit), strict=True)]
            if near:  # the cosines again in float64, as _exact() computes them
                rows, inverse = np.unique([row for row, _, _ in near], return_inverse=True)
                exact, of = self._exact_rows(rows), np.array([b for _, b, _ in near])
                cos64 = np.zeros(len(near))
                for b in np.unique(of):
                    cos64[of == b] = cosines64(exact[inverse[of == b]], q[b])
                near = [(row, b, float(cos64[j])) for j, (row, b, _) in enumerate(near)]
            for row, b, c in near:
                if mq is not None and sq is not None:
                    sc = 0.5 * ((c - mq[b]) / sq[b] + (c - self._means[row]) / self._stds[row])
                else:
                    sc = c
                if sc >= at_least or (also_if_cosine is not None and c >= also_if_cosine):
                    hits[b].append((sc, c, row))
            out = []
            for found in hits:
                best = sorted(found, key=lambda h: -h[0])[:k]
                out.append(Ranked([self._names[r] for _, _, r in best], np.array([h[0] for h in best]),
                                  np.array([h[1] for h in best])))
            return out


def voices(conn: sqlite3.Connection) -> int:
    """How many voices there are (an index count; those without a speaker embedding included)."""
    return int(conn.execute("SELECT COUNT(*) FROM voices").fetchone()[0])


__all__ = ["Ranked", "VoiceIndex", "unit_rows"]
