"""The index's half-size rows: from the approximate index's size on, :class:`VoiceIndex` keeps its rows as
bfloat16 and scores the rows a search keeps again from the catalogue's float32 vectors, so every search, cut-off
and duplicate check gives exactly what a float32 index gives, for half the memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vector_fixtures import REAL, clustered, fill_vectors
from voicebank.library import bfloat16
from voicebank.library.index import VoiceIndex, unit_rows
from voicebank.similarity import ScoreNormaliser


def test_rounding_and_the_cosine_bound() -> None:
    rng = np.random.default_rng(0)
    x = unit_rows(rng.standard_normal((2_000, 256)).astype(np.float32))
    back = bfloat16.from_bf16(bfloat16.to_bf16(x))
    assert back.dtype == np.float32 and back.shape == x.shape
    assert np.all(np.abs(back - x) <= 2.0**-8 * np.abs(x))  # round to nearest: half of bfloat16's step
    assert np.abs(back - x).max() > 2.0**-10 * np.abs(x).max() / 4  # and it does round
    assert np.array_equal(bfloat16.from_bf16(bfloat16.to_bf16(back)), back)  # representable values stay put
    assert bfloat16.to_bf16(np.array([1.0, -2.0, 0.0], np.float32)).tolist() == [0x3F80, 0xC000, 0]
    # ties to even: 1 + 2^-8 lies half-way between 1 and 1 + 2^-7, and goes to 1 (even mantissa)
    assert bfloat16.to_bf16(np.array([1 + 2.0**-8], np.float32)).tolist() == [0x3F80]
    queries = unit_rows(rng.standard_normal((256, 3)).T.astype(np.float32)).T  # (256, 3) unit columns
    got = bfloat16.cosines(bfloat16.to_bf16(x), queries)
    want = x @ queries
    assert got.shape == (2_000, 3)
    assert np.abs(got - want).max() <= 2.0**-8 <= bfloat16.COSINE_ERROR
    assert np.allclose(bfloat16.cosines(bfloat16.to_bf16(x), queries[:, 0]), back @ queries[:, 0], atol=1e-6)


def _pair(tmp_path: Path, rows: np.ndarray) -> tuple[VoiceIndex, VoiceIndex]:
    """A bfloat16 index (its graph never used, so every search takes the exact path) and a float32 one."""
    store = fill_vectors(tmp_path, rows)
    half = VoiceIndex(store, ann_from=500)
    half.refresh()
    assert half.neighbours is not None
    half.neighbours.ann_from = 10**9  # the rows stay bfloat16 (once converted they stay), the graph unused
    exact = VoiceIndex(store, ann_from=0)
    exact.refresh()
    assert half.bf16 and not exact.bf16
    return half, exact


def test_half_the_memory_and_the_same_results_as_float32(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    data = unit_rows(np.load(REAL).astype(np.float32))  # real-derived embeddings: many near ties
    held = np.random.default_rng(3).choice(data.shape[0], size=60, replace=False)
    rows = np.delete(data, held, axis=0)
    half, exact = _pair(tmp_path, rows)
    with half._store.catalogue.write() as conn:  # every seventh voice is a narrator
        conn.execute("INSERT INTO tags (voice_id, tag) SELECT id, 'narrator' FROM voices WHERE id % 7 = 0")
    assert half._unit.dtype == np.uint16 and half._unit.nbytes * 2 == exact._unit.nbytes
    norm = ScoreNormaliser(rows[np.random.default_rng(4).choice(rows.shape[0], 1_000, replace=False)],
                           exclude_above=0.999)
    for index in (half, exact):
        index.normalise(1, norm.statistics)
    assert np.array_equal(half._means[: half._size], exact._means[: exact._size])  # from the float32 rows
    qm, qs = norm.statistics(data[held])
    for j, q in enumerate(data[held]):
        stats = (float(qm[j]), float(qs[j]))
        for kwargs in ({"k": 10}, {"k": 10, "query_stats": stats}, {"k": 3, "exclude": "voice-0000007"},
                       {"k": 5, "query_stats": stats, "at_least": norm.duplicate_threshold, "also_if_cosine": 0.9},
                       {"k": 10, "query_stats": stats, "tag": "narrator"},
                       {"k": 4, "tag": "narrator", "exclude": "voice-0000013"}):
            want, got = exact.rank(q, **kwargs), half.rank(q, **kwargs)
            assert got.names == want.names
            assert np.array_equal(got.scores, want.scores) and np.array_equal(got.cosines, want.cosines)
    many = {"query_stats": (qm, qs), "at_least": norm.duplicate_threshold, "also_if_cosine": 0.9, "k": 5}
    for got, want in zip(half.matches(data[held], **many), exact.matches(data[held], **many), strict=True):
        assert got.names == want.names and np.array_equal(got.scores, want.scores)
    names, vectors = half.vectors(100)
    assert (names, vectors.tolist()) == (lambda n, v: (n, v.tolist()))(*exact.vectors(100))


def test_a_search_reads_back_only_the_rows_it_keeps(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    half, exact = _pair(tmp_path, clustered(3_000, seed=5))
    rng = np.random.default_rng(6)
    before = half.rows_rescored
    for i in rng.choice(3_000, size=20, replace=False):
        q = exact._unit[i] + 0.02 * rng.standard_normal(256).astype(np.float32)
        assert half.rank(q, k=10).names == exact.rank(q, k=10).names
    per_search = (half.rows_rescored - before) / 20
    assert 10 <= per_search <= 60  # the 10 + 16 best and the few within the bfloat16 error of them, not 3,000
    assert exact.rows_rescored == 0


def test_a_growing_index_turns_to_bfloat16_at_the_graph_size_and_keeps_its_rows(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    rows = clustered(900, seed=7)
    store = fill_vectors(tmp_path, rows[:400])
    index = VoiceIndex(store, ann_from=600)
    index.refresh()
    assert not index.bf16
    fill_vectors(tmp_path, rows[400:], start=400)
    index.refresh()
    assert index.bf16
    ids, vectors = index.live()
    assert len(ids) == 900
    assert np.abs(vectors - rows).max() <= 2.0**-8  # unit rows, each component within bfloat16 rounding
    assert index.rank(rows[650], k=1).names == ["voice-0000650"]
    assert index.neighbours is not None and index.neighbours.built.wait(300)  # built from the bfloat16 rows
    index.refresh()
    assert index.neighbours.usable() is not None
    exact = VoiceIndex(store, ann_from=0)
    exact.refresh()
    for i in (3, 420, 899):
        got, want = index.rank(rows[i], k=10), exact.rank(rows[i], k=10)
        assert got.names == want.names and np.array_equal(got.scores, want.scores)
