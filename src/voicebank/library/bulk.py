"""Committing voices computed elsewhere: one at a time (:func:`commit_one`) or many in one transaction
(:func:`commit_many`), with the duplicate check and similarity statistics of an add.

A :class:`Pending` voice is what an add, an import or a ``voicebank batch`` row turns into before it is stored:
the catalogue row and files (:class:`~voicebank.store.records.NewVoice`), a label for messages, and what it
must not repeat.  :func:`commit_many` scores a whole chunk against the library's index in one matrix product
per block of stored voices (and against the chunk's own earlier voices), then stores the chunk in one
transaction in which each refused voice is rolled back alone, so bulk imports cost a transaction per chunk
rather than per voice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..errors import DuplicateAudioError, LibraryError, VoiceExistsError
from ..options import embedding_variant
from ..similarity import SAME_RECORDING_COSINE, ScoreNormaliser
from ..store.records import NewVoice, VoiceInfo
from ..store.store import VoiceStore
from .computes import Computes
from .index import unit_rows
from .results import AddResult
from .scoring import Scoring
from .search import MAX_SIMILAR, Similar, find_similar, similar_warnings, warn_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """A voice ready to be stored: its row and files, the label its messages use, the sha256 of a voice file
    that must not be stored twice (``None``: no such check) and warnings found while preparing it."""

    new: NewVoice
    label: str
    refuse_voice_file: str | None = None
    warnings: tuple[str, ...] = ()


def commit_one(store: VoiceStore, scoring: Scoring, engine: Computes | None, pending: Pending, *,
               threshold: float) -> AddResult:
    """Store one voice in one transaction, after its duplicate check.  Refusals raise
    (:class:`~voicebank.errors.VoiceExistsError`, :class:`~voicebank.errors.DuplicateAudioError`, ...)."""
    new = pending.new
    similar, norms = find_similar(scoring, engine, new.speaker_emb, new.variant, duplicate_threshold=threshold)
    info = store.insert(replace(new, norms=norms), label=pending.label, refuse_voice_file=pending.refuse_voice_file)
    warnings = (*pending.warnings, *similar_warnings(similar))
    for w in warnings:
        log.info("%s: %s", pending.label, w)
    return AddResult(pending.label, new.name, "added", "", warnings, tuple(similar), info)


def commit_many(store: VoiceStore, scoring: Scoring, engine: Computes | None, items: Sequence[Pending], *,
                threshold: float, check_duplicates: bool = True, details: bool = True) -> list[AddResult]:
    """Store ``items`` in one transaction, one :class:`AddResult` each in order, never raising for one voice:
    ``added`` (with possible duplicates among the stored voices and the chunk's earlier ones), ``skipped``
    (its name, audio or voice file is already stored, also by an earlier item) or ``failed`` (another
    refusal, e.g. a bad base).  A failure of the whole write (a full disk) raises and stores none of them.

    ``check_duplicates=False`` leaves out the search for look-alike voices (each voice's similarity statistics
    are still stored): a chunk then costs the same however large the library is.  ``details=False``: the
    results carry no :class:`~voicebank.store.records.VoiceInfo` (``voice`` is ``None``), which saves reading
    each voice back.
    """
    similar: list[list[tuple[int | str, float, float]]] = [[] for _ in items]
    norms: list[tuple[float, float, int] | None] = [None] * len(items)
    for rows in _by_variant(items).values():
        _score_chunk(scoring, engine, [items[i].new for i in rows], rows, threshold, check_duplicates, similar,
                     norms)
    stored = store.insert_many([(replace(p.new, norms=norms[i]), p.label, p.refuse_voice_file)
                                for i, p in enumerate(items)], details=details)
    out = []
    for i, (p, got) in enumerate(zip(items, stored, strict=True)):
        if not isinstance(got, LibraryError):
            found = _named(similar[i], items, stored)
            warnings = (*p.warnings, *similar_warnings(found))
            out.append(AddResult(p.label, p.new.name, "added", "", warnings, tuple(found),
                                 got if isinstance(got, VoiceInfo) else None))
        elif isinstance(got, (VoiceExistsError, DuplicateAudioError)):
            out.append(AddResult(p.label, p.new.name, "skipped", str(got)))
        else:
            out.append(AddResult(p.label, p.new.name, "failed", str(got)))
    return out


def _by_variant(items: Sequence[Pending]) -> dict[str, list[int]]:
    """Indices of the items with a speaker embedding, by the variant whose voice encoder made it."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(items):
        if p.new.speaker_emb is not None:
            groups.setdefault(embedding_variant(p.new.variant), []).append(i)
    return groups


def _score_chunk(scoring: Scoring, engine: Computes | None, news: list[NewVoice], rows: list[int], threshold: float,
                 check_duplicates: bool, similar: list[list[tuple[int | str, float, float]]],
                 norms: list[tuple[float, float, int] | None]) -> None:
    """Fill ``similar`` and ``norms`` at ``rows`` for voices of one variant (as :func:`find_similar` does for
    one voice): stored look-alikes by name, earlier voices of the chunk by their index."""
    scoring.index.refresh()
    if not len(scoring.index):
        return  # nothing to compare with: no cohort is embedded for the first voices
    norm: ScoreNormaliser | None = scoring.normaliser(engine, news[0].variant, duplicate_threshold=threshold,
                                                      store_results=True)
    queries = np.stack([np.asarray(n.speaker_emb, dtype=np.float32).reshape(-1) for n in news])
    stats = norm.statistics(queries) if norm is not None else None
    cohort_id = scoring.cohort_id
    if stats is not None and cohort_id is not None and cohort_id >= 0:
        for k, i in enumerate(rows):
            norms[i] = (float(stats[0][k]), float(stats[1][k]), int(cohort_id))
    if not check_duplicates:
        return
    cutoff = warn_at(norm, len(scoring.index) + len(rows))  # what each voice is compared with, at most
    ranked = scoring.index.matches(queries, query_stats=stats, at_least=cutoff, also_if_cosine=SAME_RECORDING_COSINE,
                                   k=MAX_SIMILAR)
    unit = unit_rows(queries).astype(np.float64)
    cos = unit @ unit.T
    if stats is not None:
        m, s = stats
        score = 0.5 * ((cos - m[:, None]) / s[:, None] + (cos - m[None, :]) / s[None, :])
    else:
        score = cos
    earlier = np.tril((score >= cutoff) | (cos >= SAME_RECORDING_COSINE), k=-1)  # the chunk's earlier voices
    for k, i in enumerate(rows):
        found: list[tuple[int | str, float, float]] = [
            (n, float(a), float(c)) for n, a, c in zip(ranked[k].names, ranked[k].scores, ranked[k].cosines,
                                                       strict=True)]
        found += [(rows[j], float(score[k, j]), float(cos[k, j])) for j in np.flatnonzero(earlier[k])]
        similar[i] = sorted(found, key=lambda h: -h[1])[:MAX_SIMILAR]


def _named(found: list[tuple[int | str, float, float]], items: Sequence[Pending],
           stored: Sequence[VoiceInfo | int | LibraryError]) -> list[Similar]:
    """Look-alikes by name: an earlier voice of the chunk counts only if it was stored."""
    out: list[Similar] = []
    for who, score, cos in found:
        if isinstance(who, int):
            if isinstance(stored[who], LibraryError):
                continue
            who = items[who].new.name
        out.append((who, score, cos))
    return out


__all__ = ["Pending", "commit_many", "commit_one"]
