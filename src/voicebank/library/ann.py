""":class:`Graph`: an approximate nearest-neighbour index (usearch HNSW) over the library's speaker embeddings, and
its file in the library's cache.

Optional (``pip install 'voicebank[ann]'``): without usearch every search stays exact.  The graph answers by raw
inner product of unit vectors (the cosine), keyed by voice id; the library's own ranking (normalised scores,
cut-offs) is then done exactly on the few candidates it returns (:class:`~.index.VoiceIndex`).  Vectors are
stored as int8 (a quarter of the float32 rows the exact path keeps), which only chooses candidates: every score
returned is computed again from the float32 row.

The file ``<library>/cache/voice-graph-<seq>.usearch`` holds the graph as it was at ``vector_log`` sequence
``seq``; it is written to a temporary name and renamed (a reader sees a whole file or none), the others are
removed, and the next process loads the newest one and catches up from the log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .bfloat16 import from_bf16

log = logging.getLogger(__name__)

ANN_FROM = 50_000
"""An index of at least this many voices searches through the graph (``VOICEBANK_ANN`` overrides it)."""
CANDIDATES = 128
"""Candidates taken from the graph per query (at least; more when more results are asked for), re-scored."""
CONNECTIVITY = 16
"""Edges per graph node (HNSW ``M``)."""
EXPANSION_ADD = 128
"""Breadth of the search that places a new node (``efConstruction``)."""
EXPANSION_SEARCH = 192
"""Breadth of a search (``ef``), at least the candidates asked for."""
DTYPE = "i8"
"""How the graph stores its vectors (only candidates are chosen with them)."""
THREADS = 1
"""Threads that add to a graph: two threads built 3,000 clustered rows 1.3x faster, but 5 queries in 1,200 then
missed a whole cluster of their top 10 (an island the concurrent inserts left unlinked), none with one."""
BUILD_CHUNK = 8_192
"""Rows added per call while building (a build can stop between two)."""
FILE = re.compile(r"voice-graph-(\d+)\.usearch")


def available() -> bool:
    """Whether usearch (the ``ann`` extra) is installed."""
    return importlib.util.find_spec("usearch") is not None


def _usearch() -> Any:
    try:
        from usearch import index
    except ImportError as e:
        raise MissingDependencyError("the approximate index needs usearch: pip install 'voicebank[ann]'") from e
    return index


def candidates_for(k: int) -> int:
    """How many candidates to take from the graph for the ``k`` best."""
    return max(CANDIDATES, 2 * (k + 16))


class Graph:
    """An HNSW graph of unit vectors keyed by voice id, as of ``vector_log`` sequence ``seq`` (not thread-safe:
    its owner serialises the calls)."""

    def __init__(self, index: Any, seq: int) -> None:
        self.index = index
        self.seq = seq

    @classmethod
    def new(cls, seq: int = 0) -> Graph:
        """An empty graph."""
        index = _usearch().Index(ndim=256, metric="ip", dtype=DTYPE, connectivity=CONNECTIVITY,
                                 expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
        return cls(index, seq)

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, seq: int, *, stop: threading.Event | None = None,
              ) -> Graph | None:
        """A graph of ``vectors`` (n, 256) keyed by ``ids`` (n,) (minutes at 10^6 rows on two cores), added a
        chunk at a time; ``None`` when ``stop`` is set meanwhile (a process exiting).  ``vectors``: float32, or
        bfloat16 bit patterns (uint16, widened a chunk at a time)."""
        graph = cls.new(seq)
        for start in range(0, len(ids), BUILD_CHUNK):
            if stop is not None and stop.is_set():
                return None
            chunk = vectors[start: start + BUILD_CHUNK]
            graph.add(ids[start: start + BUILD_CHUNK], from_bf16(chunk) if chunk.dtype == np.uint16 else chunk)
        return graph

    def __len__(self) -> int:
        return len(self.index)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add unit ``vectors`` under voice ``ids`` (none of them in the graph)."""
        if len(ids):
            self.index.add(np.asarray(ids, dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32),
                           threads=THREADS)

    def remove(self, ids: np.ndarray) -> None:
        """Remove voice ``ids`` (those not in the graph are ignored)."""
        if len(ids):
            self.index.remove(np.asarray(ids, dtype=np.uint64))

    def search(self, queries: np.ndarray, k: int) -> list[np.ndarray]:
        """Voice ids of about the ``k`` nearest rows by inner product, for each of (B, 256) unit ``queries``."""
        self.index.expansion_search = max(EXPANSION_SEARCH, k)
        found = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, threads=1)
        keys = np.atleast_2d(np.asarray(found.keys)).astype(np.int64)
        counts = np.atleast_1d(np.asarray(getattr(found, "counts", keys.shape[1])))  # one query: no counts
        return [keys[b, : int(counts[b])] for b in range(keys.shape[0])]

    def holds(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """For each voice id: whether the graph holds it with (to int8 precision, cosine 0.99) this vector."""
        out = np.zeros(len(ids), dtype=bool)
        if not len(ids):
            return out
        got = self.index.get(np.asarray(ids, dtype=np.uint64), dtype=np.float32)
        rows = list(got) if isinstance(got, tuple) or np.ndim(got) == 2 else [got]
        for k, (want, have) in enumerate(zip(vectors, rows, strict=True)):
            if have is not None and np.shape(have) == want.shape:
                have = np.asarray(have, dtype=np.float32)
                norm = float(np.linalg.norm(have))
                out[k] = norm > 0 and float(want @ have) / norm >= 0.99
        return out

    def save(self, directory: Path) -> Path:
        """Write the graph to ``directory`` as of its sequence number (atomically) and remove the others."""
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / f"voice-graph-{self.seq}.usearch"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".voice-graph-", suffix=".tmp")
        os.close(fd)
        try:
            self.index.save(tmp)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        for path in directory.iterdir():
            m = FILE.fullmatch(path.name)
            if m and path != final:  # older ones, and any a foreign or damaged file left
                with contextlib.suppress(OSError):
                    path.unlink()
        return final

    @classmethod
    def load(cls, directory: Path) -> Graph | None:
        """The newest graph saved in ``directory`` (``None``: none, or it cannot be read)."""
        for _ in range(2):  # a file removed between listing and opening it: look again
            newest = newest_file(directory)
            if newest is None:
                return None
            path, seq = newest
            try:
                index = _usearch().Index.restore(str(path))
            except FileNotFoundError:
                continue
            except Exception as e:  # a damaged file is only a cache
                log.warning("%s: unreadable, the graph is rebuilt (%s)", path, e)
                return None
            if index is None or index.ndim != 256:
                log.warning("%s: not a graph of speaker embeddings, it is rebuilt", path)
                return None
            index.expansion_search = EXPANSION_SEARCH
            return cls(index, seq)
        return None


def newest_file(directory: Path) -> tuple[Path, int] | None:
    """``(path, seq)`` of the newest graph file in ``directory``."""
    try:
        found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := FILE.fullmatch(p.name))]
    except OSError:
        return None
    if not found:
        return None
    seq, path = max(found)
    return path, seq


__all__ = ["ANN_FROM", "CANDIDATES", "Graph", "available", "candidates_for", "newest_file"]
