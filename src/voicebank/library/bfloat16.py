"""Unit vectors kept as bfloat16 (the top 16 bits of a float32): half the memory, for the first pass of a search
over a large index (:class:`~.index.VoiceIndex` from the approximate index's size on).

bfloat16 keeps float32's exponent and the top 7 of its 23 mantissa bits, so widening is a 16-bit shift (numpy
has no bfloat16 type, and its float16 arithmetic is ten times slower than this).  Rounding to nearest leaves each
component within ``2**-8`` of its value (relative), so the dot product of a stored unit row with a unit query is
within ``2**-8`` of the float32 one (Cauchy-Schwarz): a search keeps every row within :data:`COSINE_ERROR`,
twice that bound (for the float32 sums), of its cut-off and scores the few it keeps again from float32.
"""

from __future__ import annotations

import numpy as np

COSINE_ERROR = 2.0**-7
"""Bound on |bfloat16 cosine - float32 cosine| for unit vectors (twice the rounding bound, for the float32
sums)."""

BLOCK = 8_192
"""Rows widened at a time by :func:`cosines` (8 MiB of float32 at 256 dimensions)."""


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values -> bfloat16 bit patterns (uint16, same shape), rounded to nearest, ties to even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def from_bf16(h: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 values, same shape."""
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def cosines(matrix: np.ndarray, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``matrix`` (n, d) bfloat16 bit patterns (``rows`` of them only, when given) @ ``queries`` (d,) or (d, B)
    float32 -> (n,) or (n, B) float32, widened :data:`BLOCK` rows at a time (no float32 copy of the whole)."""
    q = np.asarray(queries, dtype=np.float32)
    n = matrix.shape[0] if rows is None else rows.size
    out = np.empty((n, *q.shape[1:]), dtype=np.float32)
    wide = np.empty((min(BLOCK, n), matrix.shape[1]), dtype=np.uint32)
    for start in range(0, n, BLOCK):
        part = matrix[start: start + BLOCK] if rows is None else matrix[rows[start: start + BLOCK]]
        w = wide[: part.shape[0]]
        w[...] = part
        w <<= np.uint32(16)
        out[start: start + part.shape[0]] = w.view(np.float32) @ q
    return out


__all__ = ["BLOCK", "COSINE_ERROR", "cosines", "from_bf16", "to_bf16"]
