"""The index's ranking against a brute-force reference on the same vectors: the same top-k and the same scores
(float64), with normalised scores, removed voices, an excluded name, a tag, and the duplicate cut-offs; large
enough that the ranking takes its sampled shortcut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicebank.library.index import VoiceIndex, unit_rows
from voicebank.store.store import VoiceStore

from scale_fixtures import fill

N = 40_000


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> tuple[VoiceStore, VoiceIndex, np.ndarray]:
    store = fill(Path(tmp_path_factory.mktemp("index")), N)
    for i in range(0, 400, 7):
        store.remove(f"voice-{i:07d}")
    idx = VoiceIndex(store)
    idx.refresh()
    cohort = unit_rows(np.random.default_rng(5).standard_normal((300, 256)))

    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = np.sort(x @ cohort.T, axis=1)[:, -20:]
        return top.mean(axis=1), top.std(axis=1)

    idx.normalise(1, stats)
    return store, idx, cohort


def brute(store: VoiceStore, idx: VoiceIndex, q: np.ndarray, stats: tuple[float, float] | None,
          ) -> tuple[list[str], np.ndarray, np.ndarray]:
    names, vectors = idx.vectors()
    ids, means, stds = idx.statistics(1)
    assert len(names) == store.count()
    cos = (vectors @ unit_rows(q[None, :])[0]).astype(np.float64)
    if stats is None:
        score = cos
    else:
        order = {int(i): k for k, i in enumerate(ids)}
        by_name = {idx._names[r]: r for r in range(idx._size) if idx._alive[r]}
        row_ids = np.array([idx._ids[by_name[n]] for n in names])  # the index's own ids, by name
        mi = np.array([means[order[int(i)]] for i in row_ids])
        si = np.array([stds[order[int(i)]] for i in row_ids])
        score = 0.5 * ((cos - stats[0]) / stats[1] + (cos - mi) / si)
    return names, score, cos


@pytest.mark.parametrize("normalised", [True, False])
def test_rank_equals_brute_force(index, normalised: bool) -> None:
    store, idx, _ = index
    rng = np.random.default_rng(11)
    for _ in range(5):
        q = rng.standard_normal(256).astype(np.float32)
        stats = (0.1, 0.05) if normalised else None
        names, score, cos = brute(store, idx, q, stats)
        for k in (1, 10, 50):
            got = idx.rank(q, k=k, query_stats=stats)
            want = np.argsort(-score, kind="stable")[:k]
            assert got.names == [names[i] for i in want]
            assert np.allclose(got.scores, score[want], rtol=1e-6, atol=1e-6)
            assert np.allclose(got.cosines, cos[want], atol=1e-6)


def test_exclude_tag_and_cut_offs_equal_brute_force(index) -> None:
    store, idx, _ = index
    q = np.asarray(store.voice("voice-0001234").speaker_emb)
    stats = (0.1, 0.05)
    names, score, cos = brute(store, idx, q, stats)
    got = idx.rank(q, k=5, query_stats=stats, exclude="voice-0001234")
    order = [i for i in np.argsort(-score, kind="stable") if names[i] != "voice-0001234"][:5]
    assert got.names == [names[i] for i in order]

    tagged = {v.name for v in store.list(tag="narrator")}
    got = idx.rank(q, k=10, query_stats=stats, tag="narrator")
    order = [i for i in np.argsort(-score, kind="stable") if names[i] in tagged][:10]
    assert got.names == [names[i] for i in order]

    top = np.sort(score)
    cut = float(top[-30] + top[-31]) / 2  # thirty rows reach it, none at a hair's breadth
    got = idx.rank(q, k=1000, query_stats=stats, at_least=cut, also_if_cosine=0.2)
    want = sorted((i for i in range(len(names)) if score[i] >= cut or cos[i] >= 0.2), key=lambda i: -score[i])
    assert got.names == [names[i] for i in want] and len(want) >= 30
    assert np.allclose(got.scores, score[want], rtol=1e-6, atol=1e-6)

    many = idx.matches(np.stack([q, -q]), query_stats=(np.array([0.1, 0.1]), np.array([0.05, 0.05])),
                       at_least=cut, also_if_cosine=0.2, k=1000)
    assert many[0].names == got.names and np.allclose(many[0].scores, got.scores)
