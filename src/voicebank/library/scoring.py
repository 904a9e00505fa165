""":class:`Scoring`: a library's similarity scores at any size -- its :class:`~.index.VoiceIndex` and its cohort.

Scores are normalised against a cohort (:class:`~voicebank.similarity.ScoreNormaliser`), and a voice's half of
the normalisation (the mean and spread of its top cohort cosines) depends only on that voice and the cohort, so
it is computed once, when the voice is added, and stored with it.  The cohort is built from the library
(:func:`voicebank.cohort.select_cohort`: the library's own voices, topped up with the built-in cohort while there
are fewer than 50) and rebuilt only when the library has changed enough to matter:

* below 100 voices, whenever the number of voices changed (small libraries score exactly against all of
  their voices);
* up to 2,000, when it has grown or shrunk by half since the cohort was built (each rebuild recomputes every
  voice's statistics; growing by half keeps that to a constant amount of work per added voice);
* from 2,000 on, never on its own: the cohort is then an even sample of 1,000 of them.

So adding a voice, comparing two and searching cost the same however many voices there are, apart from the one
matrix-vector product of a search over the index.  Without weights to embed the built-in cohort (and no stored
cohort), scores are raw cosines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import numpy as np

from ..cohort import (
    MAX_LIBRARY_COHORT,
    MIN_LIBRARY_COHORT,
    builtin_cohort_embeddings,
    cached_builtin_cohort,
    select_cohort,
)
from ..errors import LibraryError, VoicebankError
from ..options import embedding_variant
from ..similarity import DEFAULT_TOP_K, DUPLICATE_COSINE, DUPLICATE_THRESHOLD, ScoreNormaliser, impostor_ceiling
from ..store.store import VoiceStore, now
from ..store.vectors import CohortRecord, latest_cohort, save_cohort, save_stats
from .computes import Computes
from .index import VoiceIndex

log = logging.getLogger(__name__)

T = TypeVar("T")

CohortMemo = dict[str, np.ndarray]
"""``weights fingerprint -> built-in cohort embeddings (26, 256)``, kept by the caller between calls."""

EXACT_BELOW = 2 * MIN_LIBRARY_COHORT
"""Below this many voices the cohort is rebuilt whenever the number of voices changes."""
SETTLED_FROM = 2 * MAX_LIBRARY_COHORT
"""From this many voices (at the last rebuild) on, the cohort is not rebuilt on its own."""
REBUILD_FACTOR = 1.5
"""In between, the cohort is rebuilt when the library has grown or shrunk by this factor."""
IN_MEMORY = -2
"""The id of a cohort that could not be stored (a read-only library): it lives in this process only."""


def needs_rebuild(cohort: CohortRecord | None, voices: int, fingerprint: str | None) -> bool:
    """Whether a library of ``voices`` voices should score against a new cohort rather than ``cohort``."""
    if cohort is None:
        return True
    if fingerprint is not None and cohort.fingerprint != fingerprint:
        return True  # other weights: the built-in cohort and the impostor ceiling differ
    built = cohort.library_size
    if voices == built:
        return False
    if voices < EXACT_BELOW or built < EXACT_BELOW:
        return True
    if built >= SETTLED_FROM:
        return False
    return voices >= REBUILD_FACTOR * built or voices * REBUILD_FACTOR <= built


class Scoring:
    """Normalised similarity scores of one library (thread-safe); :attr:`index` holds its speaker embeddings."""

    def __init__(self, store: VoiceStore, *, memo: CohortMemo | None = None) -> None:
        self._store = store
        self.index = VoiceIndex(store)
        self._memo: CohortMemo = memo if memo is not None else {}
        self._lock = threading.RLock()
        self._cohort: CohortRecord | None = None
        self.rebuilds = 0
        """How many cohorts this object has built (for tests and benchmarks)."""
        self._common: tuple[int, str | None] | None = None
        self._warned = False
        self._made: tuple[CohortRecord, float, ScoreNormaliser] | None = None

    def normaliser(self, engine: Computes | None, variant: str, *, duplicate_threshold: float = DUPLICATE_THRESHOLD,
                   store_results: bool = False) -> ScoreNormaliser | None:
        """The library's score normaliser now, with every indexed voice's statistics up to date (``None``: no
        cohort can be had, so scores are raw cosines compared with :data:`~voicebank.similarity.DUPLICATE_COSINE`).

        ``store_results``: store a new cohort and statistics computed here (the write paths do; a search keeps
        them in memory, so a read-only library can be searched).
        """
        with self._lock:
            self.index.refresh()
            v = embedding_variant(variant)
            fingerprint = self._fingerprint(engine, v)
            cohort = self._stored_cohort()
            if needs_rebuild(cohort, len(self.index), fingerprint):
                built_for, builtin = self._builtin(engine, v, fingerprint)  # only now: embedded, or its cache found
                if builtin is not None:
                    cohort = self._rebuild(builtin, built_for, store_results)
                elif cohort is None:
                    if not self._warned:
                        log.warning("similarity scores are raw speaker cosines (threshold %.2f): no weights to "
                                    "embed the built-in cohort with", DUPLICATE_COSINE)
                        self._warned = True
                    return None
            assert cohort is not None
            if store_results and cohort.id == IN_MEMORY:  # built by a search earlier: a write stores it now
                cohort = self._store_cohort(cohort)
            norm = self._normaliser_of(cohort, duplicate_threshold)
            ids, means, stds = self.index.normalise(cohort.id, norm.statistics)
            if ids.size and store_results and cohort.id != IN_MEMORY:
                self._save(lambda: save_stats(self._store.catalogue, cohort.id, ids, means, stds))
            return norm

    def _normaliser_of(self, cohort: CohortRecord, duplicate_threshold: float) -> ScoreNormaliser:
        """The normaliser of ``cohort``, made once per cohort (it normalises the cohort's vectors: ~1 ms)."""
        made = self._made
        if made is None or made[0] is not cohort or made[1] != duplicate_threshold:
            norm = ScoreNormaliser(cohort.vectors, top_k=cohort.top_k, exclude_above=cohort.exclude_above,
                                   duplicate_threshold=duplicate_threshold)
            made = self._made = (cohort, duplicate_threshold, norm)
        return made[2]

    @property
    def cohort_id(self) -> int | None:
        """The id of the cohort the last :meth:`normaliser` scored against (``None``: none yet)."""
        return self._cohort.id if self._cohort is not None else None

    def _stored_cohort(self) -> CohortRecord | None:
        if self._cohort is not None and self._cohort.id == IN_MEMORY:
            return self._cohort
        with self._store.catalogue.read() as conn:
            newest = conn.execute("SELECT MAX(id) FROM cohorts").fetchone()[0]
            if newest is None:
                self._cohort = None
            elif self._cohort is None or self._cohort.id != newest:
                self._cohort = latest_cohort(conn)
        return self._cohort

    @staticmethod
    def _fingerprint(engine: Computes | None, variant: str) -> str | None:
        """The weights fingerprint of the engine at hand (``None``: no engine or no weights)."""
        if engine is None:
            return None
        try:
            return engine.weights_fingerprint(variant)
        except VoicebankError as e:
            log.debug("no weights fingerprint from the engine: %s", e)
            return None

    def _builtin(self, engine: Computes | None, variant: str, fingerprint: str | None,
                 ) -> tuple[str, np.ndarray | None]:
        """``(fingerprint to record, built-in cohort embeddings)`` for the weights at hand (embedded once, then
        cached); without weights, the cached embeddings of the fingerprint most stored voices carry, if any
        (recorded as ``""``)."""
        if engine is not None and fingerprint is not None:
            builtin = self._memo.get(fingerprint)
            if builtin is not None:
                return fingerprint, builtin
            try:
                eng = engine
                builtin = builtin_cohort_embeddings(lambda files: eng.embed(files, variant=variant), fingerprint,
                                                    self._store.cache_dir)
                self._memo[fingerprint] = builtin
                return fingerprint, builtin
            except VoicebankError as e:
                log.debug("no built-in cohort from the engine: %s", e)
        common = self._common_fingerprint()
        return "", cached_builtin_cohort(common, self._store.cache_dir) if common is not None else None

    def _common_fingerprint(self) -> str | None:
        """The fingerprint most stored voices carry (a query over every voice), looked up again only when the
        library has grown or shrunk by :data:`REBUILD_FACTOR` since."""
        voices = len(self.index)
        if self._common is None or not (self._common[0] / REBUILD_FACTOR < voices < self._common[0] * REBUILD_FACTOR):
            self._common = (max(1, voices), self._store.common_fingerprint())
        return self._common[1]

    def _rebuild(self, builtin: np.ndarray, fingerprint: str, store_results: bool) -> CohortRecord:
        """A cohort for the library as it is now, with every voice's statistics against it."""
        _names, vectors = self.index.vectors(MAX_LIBRARY_COHORT)  # the ones select_cohort takes, of them all
        cohort = select_cohort(vectors, builtin).astype(np.float32)
        exclude = impostor_ceiling(builtin)
        norm = ScoreNormaliser(cohort, top_k=DEFAULT_TOP_K, exclude_above=exclude)
        record = CohortRecord(IN_MEMORY, fingerprint, len(self.index), cohort, exclude, DEFAULT_TOP_K)
        self.index.normalise(IN_MEMORY, norm.statistics)
        self.rebuilds += 1
        self._cohort = record
        return self._store_cohort(record) if store_results else record

    def _store_cohort(self, record: CohortRecord) -> CohortRecord:
        """Store an in-memory cohort with the statistics computed against it (kept in memory if it cannot be)."""
        stats = self.index.statistics(IN_MEMORY)
        stored = self._save(lambda: save_cohort(
            self._store.catalogue, fingerprint=record.fingerprint, library_size=record.library_size,
            vectors=record.vectors, exclude_above=record.exclude_above, top_k=record.top_k, stats=stats,
            created_at=now()))
        if stored is None:
            return record
        self.index.relabel(IN_MEMORY, int(stored))
        self._cohort = replace(record, id=int(stored))
        return self._cohort

    def _save(self, write: Callable[[], T]) -> T | None:
        """Run a write that only saves work (a read-only or busy library keeps it in memory instead)."""
        try:
            return write()
        except LibraryError as e:
            log.debug("similarity statistics kept in memory only: %s", e)
            return None


__all__ = ["EXACT_BELOW", "IN_MEMORY", "REBUILD_FACTOR", "SETTLED_FROM", "CohortMemo", "Scoring", "needs_rebuild"]
