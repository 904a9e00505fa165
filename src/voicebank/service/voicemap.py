"""The 2-D map of the voices: an even sample of at most :data:`MAP_POINTS` voices placed on the first two
principal components of their speaker embeddings, plus (on request) one voice and its nearest voices placed on
the same plane.  Its cost is the sample's, never the library's: the sample is taken by stepping evenly through
the catalogue's row ids (or, for a tag, through the tag index), one indexed lookup per point.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio.dsp import _blas_single_threaded
from ..library import Library

MAP_POINTS = 2_000
"""The most voices a map samples (a library of at most this many voices is mapped whole)."""
MAX_NEAR = 50
"""The most nearest voices a map places around one voice."""
DIM = 256
_BATCH = 500


@dataclass(frozen=True)
class Sample:
    """The sampled voices: their ids, names, speaker embeddings (n, 256) and whether voices were left out."""

    ids: list[int]
    names: list[str]
    vectors: np.ndarray
    partial: bool


def _vector(raw: object) -> np.ndarray | None:
    if not isinstance(raw, bytes) or len(raw) != 4 * DIM:
        return None
    v = np.frombuffer(raw, dtype=np.float32).astype(np.float64)
    return v if np.all(np.isfinite(v)) else None


def _range(conn: sqlite3.Connection, tag: str | None) -> tuple[int, int] | None:
    """The first and last row id of the voices (of ``tag``: of its rows in the tag index)."""
    if tag is None:
        lo = conn.execute("SELECT id FROM voices ORDER BY id LIMIT 1").fetchone()
        hi = conn.execute("SELECT id FROM voices ORDER BY id DESC LIMIT 1").fetchone()
    else:
        lo = conn.execute("SELECT rowid FROM tags WHERE tag = ? ORDER BY rowid LIMIT 1", (tag,)).fetchone()
        hi = conn.execute("SELECT rowid FROM tags WHERE tag = ? ORDER BY rowid DESC LIMIT 1", (tag,)).fetchone()
    return (int(lo[0]), int(hi[0])) if lo and hi else None


def _voice_ids(conn: sqlite3.Connection, tag: str | None, cap: int) -> tuple[list[int], bool]:
    """Ids of at most ``cap`` voices evenly spread over the row ids; whether some voices were stepped over."""
    span = _range(conn, tag)
    if span is None:
        return [], False
    lo, hi = span
    if hi - lo < cap:  # few enough row ids to read them all
        if tag is None:
            rows = conn.execute("SELECT id FROM voices WHERE id BETWEEN ? AND ? ORDER BY id", (lo, hi))
        else:
            rows = conn.execute("SELECT voice_id FROM tags WHERE tag = ? AND rowid BETWEEN ? AND ? ORDER BY rowid",
                                (tag, lo, hi))
        return [int(r[0]) for r in rows], False
    ids: list[int] = []
    for start in np.linspace(lo, hi, cap).round().astype(np.int64).tolist():
        if tag is None:
            r = conn.execute("SELECT id FROM voices WHERE id >= ? ORDER BY id LIMIT 1", (start,)).fetchone()
        else:
            r = conn.execute("SELECT voice_id FROM tags WHERE tag = ? AND rowid >= ? ORDER BY rowid LIMIT 1",
                             (tag, start)).fetchone()
        if r is not None and (not ids or int(r[0]) != ids[-1]):
            ids.append(int(r[0]))
    return ids, True


def sample(library: Library, *, tag: str | None = None, cap: int = MAP_POINTS) -> Sample:
    """At most ``cap`` voices with a speaker embedding (those of ``tag``), evenly spread over the library."""
    with library.catalogue.read() as conn:
        ids, partial = _voice_ids(conn, tag, cap)
        found: dict[int, tuple[str, np.ndarray]] = {}
        for start in range(0, len(ids), _BATCH):
            part = ids[start:start + _BATCH]
            for i, name, raw in conn.execute("SELECT id, name, speaker_emb FROM voices WHERE id IN "
                                             f"({','.join('?' * len(part))})", part):
                v = _vector(raw)
                if v is not None and isinstance(name, str):
                    found[int(i)] = (name, v)
    keep = [i for i in ids if i in found]
    vectors = np.stack([found[i][1] for i in keep]) if keep else np.zeros((0, DIM))
    return Sample(keep, [found[i][0] for i in keep], vectors, partial)


def tags_of(library: Library, ids: Sequence[int]) -> dict[int, list[str]]:
    """The tags of each voice of ``ids`` (sorted), read from the tags' primary key."""
    out: dict[int, list[str]] = {}
    with library.catalogue.read() as conn:
        for start in range(0, len(ids), _BATCH):
            part = [int(i) for i in ids[start:start + _BATCH]]
            for i, tag in conn.execute(f"SELECT voice_id, tag FROM tags WHERE voice_id IN ({','.join('?' * len(part))})"
                                       " ORDER BY voice_id, tag", part):
                out.setdefault(int(i), []).append(str(tag))
    return out


def plane(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``(mean, axes (2, 256), explained variance ratios)`` of the rows of ``x``: the first two principal
    components (eigenvectors of the 256 x 256 scatter matrix), each signed so that its largest coordinate is
    positive (the map does not flip between calls).  BLAS runs on this thread only: a 2,000-row product split
    between threads on a busy machine took a second instead of milliseconds."""
    mean = x.mean(axis=0) if len(x) else np.zeros(DIM)
    axes = np.zeros((2, DIM))
    if len(x) < 2:
        return mean, axes, [0.0, 0.0]
    with _blas_single_threaded():
        centred = x - mean
        values, vectors = np.linalg.eigh(centred.T @ centred)
    values = np.clip(values[::-1], 0.0, None)
    axes[:] = vectors[:, ::-1][:, :2].T
    for i in range(2):
        if axes[i, np.argmax(np.abs(axes[i]))] < 0:
            axes[i] = -axes[i]
    total = float(values.sum()) or 1.0
    ratio = [float(values[i] / total) for i in range(2)]
    if total == 1.0 and not values.any():  # every point the same: no direction
        axes[:] = 0.0
    return mean, axes, ratio


def project(x: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """The rows of ``x`` (n, 256) placed on the plane: (n, 2)."""
    with _blas_single_threaded():
        return (np.atleast_2d(x) - mean) @ axes.T


def _point(name: str, xy: np.ndarray, tags: list[str], role: str) -> dict[str, Any]:
    return {"id": name, "x": round(float(xy[0]), 6), "y": round(float(xy[1]), 6), "tags": tags, "role": role}


def voice_map(library: Library, *, tag: str | None = None, cap: int = MAP_POINTS, around: str | None = None,
              k: int = 10) -> dict[str, Any]:
    """The map's JSON: the sample's points (``role`` ``"sample"``), and with ``around`` that voice (``"focus"``)
    and its ``k`` nearest (``"near"``; found by the library's search), placed on the sample's plane."""
    s = sample(library, tag=tag, cap=cap)
    mean, axes, ratio = plane(s.vectors)
    coords = project(s.vectors, mean, axes) if len(s.ids) else np.zeros((0, 2))
    roles: dict[str, str] = {}
    extra: list[tuple[int, str, np.ndarray]] = []  # the voice asked about and its nearest, when not sampled
    if around is not None and len(s.ids):
        near = [m.name for m in library.search(around, k=min(k, MAX_NEAR), tag=tag, names_only=True)]
        for name, role in [(around, "focus"), *((n, "near") for n in near)]:
            roles.setdefault(name, role)
        wanted = [n for n in roles if n not in set(s.names)]
        with library.catalogue.read() as conn:
            for name in wanted:
                r = conn.execute("SELECT id, speaker_emb FROM voices WHERE name = ?", (name,)).fetchone()
                v = _vector(r[1]) if r is not None else None  # removed meanwhile, or no embedding
                if r is not None and v is not None:
                    extra.append((int(r[0]), name, project(v, mean, axes)[0]))
    tags = tags_of(library, [*s.ids, *(i for i, _, _ in extra)])
    data = [_point(n, c, tags.get(i, []), roles.get(n, "sample"))
            for i, n, c in zip(s.ids, s.names, coords, strict=True)]
    data += [_point(n, c, tags.get(i, []), roles[n]) for i, n, c in extra]
    return {"object": "audio.voice.map", "data": data, "explained_variance": [round(r, 6) for r in ratio],
            "sampled": s.partial, "sample_size": len(s.ids), "cap": cap}


__all__ = ["MAP_POINTS", "Sample", "plane", "sample", "tags_of", "voice_map"]
