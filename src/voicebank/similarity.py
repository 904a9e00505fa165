"""Comparing voices: cosine similarity, cohort-normalised scores, equal error rate, blends.

Raw cosine between speaker embeddings depends on the encoder (Resemblyzer-style encoders end in a ReLU, so
even different speakers score about 0.55) and on the voice (some voices sit close to many others).  The
normalised score used for ranking and duplicate warnings is adaptive symmetric score normalisation (AS-norm):
each side's raw cosine is standardised against the cosines of that side to its ``top_k`` closest cohort voices,
and the two standardised values are averaged.  It is symmetric, increases with the raw cosine for a fixed
cohort, and does not change when the encoder's cosines are shifted or scaled (``a * cos + b``, ``a > 0``).
All functions here are pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, np.finfo(np.float32).tiny)


def _unit64(x: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis in float64 (scores are computed in float64 so that they are symmetric)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.finfo(np.float64).tiny)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors, in [-1, 1]."""
    return float(np.dot(normalise(np.ravel(a)), normalise(np.ravel(b))))


def cosine_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Pairwise cosine similarities: (n, d) x (m, d) -> (n, m)."""
    a = normalise(a)
    b = a if b is None else normalise(b)
    return a @ b.T


DEFAULT_TOP_K = 20
"""Cohort voices per side whose cosines make the normalisation statistics (fewer when the cohort is smaller)."""
DUPLICATE_THRESHOLD = 1.302
"""Normalised score at or above which two voices are reported as possibly the same speaker after a single
comparison (the default of every ``duplicate_threshold=``): about 5 % of different-speaker pairs reach it.  An add
compares a new voice with every stored one, so the library's duplicate check raises it with the library's size
(:func:`voicebank.duplicates.duplicate_threshold`).  Chosen on the *choose* set of ``tests/data/duplicates``
(``docs/duplicates.md``)."""
DUPLICATE_COSINE = 0.669
"""Raw speaker-embedding cosine at or above which two voices count as possibly the same speaker after a single
comparison when there are no weights (nor a cached cohort) to normalise scores with (otherwise the normalised
score is compared with :data:`DUPLICATE_THRESHOLD`); raised with the library's size like it
(:func:`voicebank.duplicates.duplicate_cosine`)."""
SAME_RECORDING_COSINE = 0.999
"""Raw cosine at or above which two embeddings are taken for the same recording (re-encoded, say) and reported
as possible duplicates whatever the normalised score: an untrained encoder scores every pair high, so only the
raw cosine can tell a copy there."""
_CHUNK_ROWS = 2048
MIN_STD = 1e-6
"""Floor of a cohort standard deviation (only reached by degenerate cohorts of identical vectors)."""


def cohort_statistics(cohort_scores: np.ndarray, top_k: int = DEFAULT_TOP_K, *,
                      exclude_above: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each row's ``top_k`` largest cohort scores.

    ``cohort_scores``: (M, N) raw cosines of M vectors to the N cohort vectors.  Scores at or above
    ``exclude_above`` are left out first: those cohort entries are probably the vector's own speaker (or the
    vector itself), and would raise its statistics.  Returns ``(mean, std)``, each (M,) float64.  A row left
    with no scores gets mean 0 and std 1 (its raw cosine passes through); one score gives std :data:`MIN_STD`.
    """
    scores = np.asarray(cohort_scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"cohort_scores must be (M, N), got shape {scores.shape}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    m, n = scores.shape
    if exclude_above is not None:
        scores = np.where(scores >= exclude_above, -np.inf, scores)
    k = min(int(top_k), n)
    if k == 0:
        return np.zeros(m), np.ones(m)
    # (M, k): the k largest of each row, in no order; excluded entries (-inf) only where fewer remain
    top = -np.partition(-scores, k - 1, axis=1)[:, :k] if k < n else scores
    valid = np.isfinite(top)
    count = valid.sum(axis=1)
    filled = np.where(valid, top, 0.0)
    mean = filled.sum(axis=1) / np.maximum(count, 1)
    var = np.where(valid, (filled - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(count, 1)
    std = np.maximum(np.sqrt(var), MIN_STD)
    empty = count == 0
    return np.where(empty, 0.0, mean), np.where(empty, 1.0, std)


def as_norm(scores_raw: np.ndarray, enroll_vs_cohort: np.ndarray, test_vs_cohort: np.ndarray,
            top_k: int = DEFAULT_TOP_K, *, exclude_above: float | None = None) -> np.ndarray:
    """Adaptive symmetric normalisation of raw scores: (M, P) raw, (M, N) and (P, N) cohort scores -> (M, P).

    ``scores_raw[i, j]``: raw cosine of enrolment vector i and test vector j; ``enroll_vs_cohort`` and
    ``test_vs_cohort``: raw cosines of each to the N cohort vectors.  The result is
    ``((s - mean_e) / std_e + (s - mean_t) / std_t) / 2`` with each side's statistics from
    :func:`cohort_statistics`.  A 1-D ``scores_raw`` (P,) is taken as one enrolment vector's row.
    """
    raw = np.asarray(scores_raw, dtype=np.float64)
    one_row = raw.ndim == 1
    raw = np.atleast_2d(raw)
    mean_e, std_e = cohort_statistics(np.atleast_2d(enroll_vs_cohort), top_k, exclude_above=exclude_above)
    mean_t, std_t = cohort_statistics(np.atleast_2d(test_vs_cohort), top_k, exclude_above=exclude_above)
    if raw.shape != (mean_e.size, mean_t.size):
        raise ValueError(f"scores_raw has shape {raw.shape}; the cohort scores give {(mean_e.size, mean_t.size)}")
    out = 0.5 * ((raw - mean_e[:, None]) / std_e[:, None] + (raw - mean_t[None, :]) / std_t[None, :])
    return out[0] if one_row else out


def impostor_ceiling(cohort: np.ndarray) -> float:
    """The highest cosine between two different vectors of a cohort of distinct speakers: (N, d) -> float.

    Cohort entries that score at least this with a voice are treated as possibly that voice's own speaker
    and left out of its statistics.  Needs N >= 2.
    """
    c = np.asarray(cohort)
    if c.ndim != 2 or c.shape[0] < 2:
        raise ValueError(f"an impostor ceiling needs a cohort of at least two vectors, got shape {c.shape}")
    u = _unit64(c)
    sims = u @ u.T
    return float(sims[np.triu_indices(c.shape[0], 1)].max())


class ScoreNormaliser:
    """Normalised similarity scores against a fixed cohort (adaptive symmetric normalisation, AS-norm).

    ``cohort``: (N, d) embeddings of voices of many speakers (L2-normalised here).  ``exclude_above``: raw
    cosine at or above which a cohort entry is left out of a voice's statistics (default: none; the library
    uses :func:`impostor_ceiling` of its built-in cohort, which also drops a voice's own copy from the cohort).
    ``duplicate_threshold``: normalised score at or above which two voices are reported as possibly the same
    speaker.  Scores are float64; a larger score means more similar, and ``score(a, b) == score(b, a)``.
    """

    def __init__(self, cohort: np.ndarray, *, top_k: int = DEFAULT_TOP_K, exclude_above: float | None = None,
                 duplicate_threshold: float = DUPLICATE_THRESHOLD) -> None:
        c = np.asarray(cohort)
        if c.ndim != 2 or c.shape[0] == 0:
            raise ValueError(f"the cohort must be a non-empty (N, d) matrix, got shape {c.shape}")
        if not np.isfinite(c).all():
            raise ValueError("the cohort holds non-finite values")
        self.cohort = _unit64(c)
        self.top_k = int(top_k)
        self.exclude_above = None if exclude_above is None else float(exclude_above)
        self.duplicate_threshold = float(duplicate_threshold)

    def __repr__(self) -> str:
        return (f"ScoreNormaliser(cohort={self.cohort.shape}, top_k={self.top_k}, "
                f"exclude_above={self.exclude_above}, duplicate_threshold={self.duplicate_threshold})")

    def statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of each vector's top cohort cosines: (M, d) -> (M,), (M,) float64."""
        u = _unit64(np.atleast_2d(x))
        means, stds = [], []
        for start in range(0, max(1, u.shape[0]), _CHUNK_ROWS):  # bounded memory for large libraries
            m, sd = cohort_statistics(u[start:start + _CHUNK_ROWS] @ self.cohort.T, self.top_k,
                                      exclude_above=self.exclude_above)
            means.append(m)
            stds.append(sd)
        return np.concatenate(means), np.concatenate(stds)

    def pairwise(self, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        """Normalised scores of every pair: (M, d) x (P, d) -> (M, P) float64 (``b`` default ``a``)."""
        ua = _unit64(np.atleast_2d(a))
        ub = ua if b is None else _unit64(np.atleast_2d(b))
        mean_a, std_a = self.statistics(ua)
        mean_b, std_b = (mean_a, std_a) if b is None else self.statistics(ub)
        raw = ua @ ub.T
        return 0.5 * ((raw - mean_a[:, None]) / std_a[:, None] + (raw - mean_b[None, :]) / std_b[None, :])

    def scores(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Normalised scores of one query against candidates: (d,) x (M, d) -> (M,) float64."""
        return self.pairwise(np.ravel(query)[None, :], candidates)[0]

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        """Normalised score of two vectors (d,) x (d,)."""
        return float(self.pairwise(np.ravel(a)[None, :], np.ravel(b)[None, :])[0, 0])


def equal_error_rate(genuine: Sequence[float], impostor: Sequence[float]) -> tuple[float, float]:
    """``(eer, threshold)`` of a verification score set: where false accepts equal false rejects.

    ``genuine``: scores of same-speaker pairs; ``impostor``: different-speaker pairs.  The EER is
    interpolated between the two thresholds that bracket the crossing.
    """
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    if g.size == 0 or i.size == 0:
        raise ValueError("the equal error rate needs both genuine and impostor scores")
    thresholds = np.unique(np.concatenate([g, i]))
    frr = np.searchsorted(g, thresholds, side="left") / g.size  # genuine below threshold are rejected
    far = 1.0 - np.searchsorted(i, thresholds, side="left") / i.size  # impostors at/above are accepted
    k = int(np.argmin(np.abs(far - frr)))
    return float((far[k] + frr[k]) / 2), float(thresholds[k])


def blend(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted average of L2-normalised vectors, re-normalised (an embedding-space blend)."""
    if not vectors:
        raise ValueError("blend needs at least one vector")
    w = np.ones(len(vectors)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(vectors),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("blend weights must be one non-negative number per voice, not all zero")
    stacked = normalise(np.stack([np.ravel(v) for v in vectors]))
    return normalise((w[:, None] * stacked).sum(axis=0) / w.sum())
