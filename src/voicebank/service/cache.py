"""An in-memory LRU of ready conditionals files, keyed by the SHA-256 of their bytes, within a byte budget.

Two maps: *what was asked* (a voice's stored state plus variant, exaggeration and format) → content hash, and
content hash → bytes.  Both count against the byte budget (the first at an estimate of its entries' size): the
bytes go first, least recently used first; the small index stays as long as it fits, so a revalidation can be
answered without the file.  A request whose stored state changed (rename, re-extraction,
another process's edit) makes a new key, so nothing stale is served; old entries age out.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_INDEX_ENTRIES = 100_000
MAX_LOOKUPS = 4_096
"""Voices whose catalogue lookup :class:`LookupMemo` keeps."""


INDEX_ENTRY_OVERHEAD = 240
"""Bytes an index entry costs beyond its key's characters: the ordered dict's slot and node, two string
headers and the 64-character digest (CPython 3.11, 64-bit)."""


def _index_cost(key: str) -> int:
    return len(key) + INDEX_ENTRY_OVERHEAD


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
            if key not in self._index:
                self.bytes += _index_cost(key)
            self._index[key] = digest
            self._index.move_to_end(key)
            if len(data) <= self.budget_bytes and digest not in self._blobs:
                self._blobs[digest] = data
                self.bytes += len(data)
            elif digest in self._blobs:
                self._blobs.move_to_end(digest)
            # files go first, least recently used first; then (rarely) the oldest entries of the index
            while self._blobs and self.bytes > self.budget_bytes:
                _, old = self._blobs.popitem(last=False)
                self.bytes -= len(old)
                self.evictions += 1
            while self._index and (self.bytes > self.budget_bytes or len(self._index) > MAX_INDEX_ENTRIES):
                old_key, _ = self._index.popitem(last=False)
                self.bytes -= _index_cost(old_key)
        return Entry(data, digest)

    def __len__(self) -> int:
        with self._lock:
            return len(self._blobs)


class LookupMemo:
    """What the catalogue said about recently served voices, valid while its generation is unchanged: a voice
    served again before any commit is not looked up again (a shared catalogue's generation is read by its watch
    thread, so a hit costs no round trip).  At most :data:`MAX_LOOKUPS` voices, least recently used dropped."""

    def __init__(self, size: int = MAX_LOOKUPS) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[object, object]] = OrderedDict()

    def get(self, name: str, generation: object) -> object | None:
        """The value stored for ``name`` at ``generation`` (``None``: none, or stored at another generation)."""
        with self._lock:
            hit = self._entries.get(name)
            if hit is None or hit[0] != generation:
                return None
            self._entries.move_to_end(name)
            return hit[1]

    def put(self, name: str, generation: object, value: object) -> None:
        """Keep ``value`` for ``name`` as read at ``generation`` (read before the lookup)."""
        with self._lock:
            self._entries[name] = (generation, value)
            self._entries.move_to_end(name)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
