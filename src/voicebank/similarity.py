"""Comparing voices: cosine similarity, nearest neighbours, equal error rate, blends."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    """L2-normalise the last axis (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, np.finfo(np.float32).tiny)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors, in [-1, 1]."""
    return float(np.dot(normalise(np.ravel(a)), normalise(np.ravel(b))))


def cosine_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Pairwise cosine similarities: (n, d) x (m, d) -> (n, m)."""
    a = normalise(a)
    b = a if b is None else normalise(b)
    return a @ b.T


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
