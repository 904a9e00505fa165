"""An in-memory LRU of ready conditionals files, keyed by the SHA-256 of their bytes, within a byte budget.

Two maps: *what was asked* (a voice's stored state plus variant, exaggeration and format) → content hash, and
content hash → bytes.  The first is small and bounded by count; the second holds the bytes, least recently
used first out, never more than the budget.  A request whose stored state changed (rename, re-extraction,
another process's edit) makes a new key, so nothing stale is served; old entries age out.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_INDEX_ENTRIES = 100_000


@dataclass(frozen=True)
class Entry:
    """One cached file: its bytes and their strong ETag (the quoted SHA-256)."""

    data: bytes
    sha256: str

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


class ConditionalsCache:
    """Thread-safe LRU of conditionals bytes within ``budget_bytes`` (0 disables caching of bytes)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = max(0, int(budget_bytes))
        self._lock = threading.Lock()
        self._index: OrderedDict[str, str] = OrderedDict()
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def etag_of(self, key: str) -> str | None:
        """The content hash last served for ``key`` (even when its bytes were evicted), else ``None``."""
        with self._lock:
            digest = self._index.get(key)
            if digest is not None:
                self._index.move_to_end(key)
            return digest

    def get(self, key: str) -> Entry | None:
        """The cached file for ``key`` (counted as a hit or a miss)."""
        with self._lock:
            digest = self._index.get(key)
            data = self._blobs.get(digest) if digest is not None else None
            if digest is None or data is None:
                self.misses += 1
                return None
            self._index.move_to_end(key)
            self._blobs.move_to_end(digest)
            self.hits += 1
            return Entry(data, digest)

    def put(self, key: str, data: bytes) -> Entry:
        """Remember ``data`` as the file for ``key``; returns it with its hash."""
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._index[key] = digest
            self._index.move_to_end(key)
            while len(self._index) > MAX_INDEX_ENTRIES:
                self._index.popitem(last=False)
            if len(data) <= self.budget_bytes and digest not in self._blobs:
                self._blobs[digest] = data
                self.bytes += len(data)
                while self.bytes > self.budget_bytes:
                    _, old = self._blobs.popitem(last=False)
                    self.bytes -= len(old)
                    self.evictions += 1
            elif digest in self._blobs:
                self._blobs.move_to_end(digest)
        return Entry(data, digest)

    def __len__(self) -> int:
        with self._lock:
            return len(self._blobs)
