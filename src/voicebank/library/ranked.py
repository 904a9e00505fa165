""":class:`Ranked` results of a search of the :class:`~.index.VoiceIndex`, and the arithmetic that picks and
scores them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranked:
    """Rows of the index ranked against a query: names, normalised scores (raw cosines when there are no
    statistics) and raw cosines, best first."""

    names: list[str]
    scores: np.ndarray
    cosines: np.ndarray


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def cosines64(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(n, d) float32 unit rows . (d,) query in float64, each row on its own (the same value for a row whichever
    rows come with it, unlike a BLAS product)."""
    return np.einsum("ij,j->i", rows.astype(np.float64), q.astype(np.float64))


def top_candidates(score: np.ndarray, k: int, slack: np.float32) -> np.ndarray:
    """Indices of at least the ``k`` best finite scores (and any within ``slack`` of the k-th), found without
    sorting the whole array: the k-th best of an even sample bounds the k-th best of all from below."""
    idx = None
    if score.size > 64 * k:
        sample = score[:: score.size // (64 * k)]
        sample = sample[np.isfinite(sample)]
        if sample.size >= k:
            floor = np.partition(sample, sample.size - k)[sample.size - k]
            idx = np.flatnonzero(score >= floor)  # at least k rows, about k * (rows per sample row)
    if idx is None:
        idx = np.flatnonzero(np.isfinite(score))
    if idx.size <= k:
        return idx
    kth = np.partition(score[idx], idx.size - k)[idx.size - k]
    return idx[score[idx] >= kth - slack]


__all__ = ["Ranked", "cosines64", "top_candidates", "unit_rows"]
