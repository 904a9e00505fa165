"""The conditionals cache: an LRU of files by content hash whose memory, index included, stays in its budget."""

from __future__ import annotations

import hashlib

from voicebank.service.cache import INDEX_ENTRY_OVERHEAD, ConditionalsCache


def blob(i: int, size: int = 1000) -> bytes:
    return bytes([i % 256]) * size


def test_files_are_kept_least_recently_used_first_out_within_the_budget():
    cache = ConditionalsCache(budget_bytes=4000)  # three files and four index entries
    for i in range(3):
        cache.put(f"k{i}", blob(i))
    assert len(cache) == 3 and cache.bytes <= cache.budget_bytes
    assert cache.get("k0") is not None  # k0 is now the most recent
    cache.put("k3", blob(3))
    assert len(cache) == 3 and cache.evictions == 1
    assert cache.get("k1") is None  # the least recently used went
    assert cache.get("k0").data == blob(0)
    assert cache.bytes <= cache.budget_bytes
    # an evicted file's hash is still known: a revalidation needs no file
    assert cache.etag_of("k1") == hashlib.sha256(blob(1)).hexdigest()


def test_the_index_counts_against_the_budget_and_gives_way_when_it_must():
    key_cost = len("k0000") + INDEX_ENTRY_OVERHEAD
    cache = ConditionalsCache(budget_bytes=10 * key_cost)
    for i in range(50):
        cache.put(f"k{i:04d}", blob(i, size=10 * key_cost + 1))  # too big to keep: only indexed
    assert len(cache) == 0
    assert cache.bytes <= cache.budget_bytes
    assert cache.etag_of("k0049") is not None and cache.etag_of("k0000") is None


def test_a_zero_budget_caches_nothing():
    cache = ConditionalsCache(budget_bytes=0)
    entry = cache.put("k", blob(1))
    assert entry.data == blob(1) and entry.etag == f'"{hashlib.sha256(blob(1)).hexdigest()}"'
    assert len(cache) == 0 and cache.get("k") is None and cache.bytes == 0
