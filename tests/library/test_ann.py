"""The approximate index (extra ``voicebank[ann]``, usearch HNSW) behind :class:`VoiceIndex`: its recall on
real-derived speaker embeddings, used from ``ann_from`` voices on, saved and loaded with the vector log it
reflects and caught up from it, rebuilt from a damaged or foreign file, and absent without usearch."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vector_fixtures import REAL, clustered, fill_vectors
from voicebank.errors import MissingDependencyError
from voicebank.library import ann, neighbours
from voicebank.library.index import VoiceIndex, unit_rows
from voicebank.similarity import ScoreNormaliser

WAIT = 300


def ready(index: VoiceIndex) -> VoiceIndex:
    index.refresh()
    assert index.neighbours is not None
    assert index.neighbours.built.wait(WAIT), "the graph was not built"
    index.refresh()
    assert index.neighbours.usable() is not None
    return index


def normalised(index: VoiceIndex, norm: ScoreNormaliser) -> VoiceIndex:
    index.normalise(1, norm.statistics)
    return index


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    """``(approximate index, exact index, queries, their statistics, normaliser)`` over the real-derived rows."""
    pytest.importorskip("usearch")
    data = unit_rows(np.load(REAL).astype(np.float32))
    held = np.random.default_rng(3).choice(data.shape[0], size=300, replace=False)
    rows = np.delete(data, held, axis=0)
    store = fill_vectors(tmp_path_factory.mktemp("real"), rows)
    norm = ScoreNormaliser(rows[np.random.default_rng(4).choice(rows.shape[0], 1_000, replace=False)],
                           exclude_above=0.999)
    near = normalised(ready(VoiceIndex(store, ann_from=1_000)), norm)
    exact = VoiceIndex(store, ann_from=0)
    exact.refresh()
    normalised(exact, norm)
    assert exact.neighbours is None
    return near, exact, data[held], norm.statistics(data[held]), norm


def test_recall_at_10_on_real_embeddings(real) -> None:
    near, exact, queries, (qm, qs), _ = real
    found = 0
    for j, q in enumerate(queries):
        stats = (float(qm[j]), float(qs[j]))
        want = exact.rank(q, k=10, query_stats=stats)
        got = near.rank(q, k=10, query_stats=stats)
        found += len(set(want.names) & set(got.names))
        common = [n for n in got.names if n in set(want.names)]
        for name in common:  # the same rows get the same scores: the candidates are scored exactly
            assert got.scores[got.names.index(name)] == pytest.approx(want.scores[want.names.index(name)], abs=1e-9)
    assert found / (10 * len(queries)) >= 0.99


def test_duplicate_check_finds_what_exact_search_finds(real) -> None:
    near, exact, queries, (qm, qs), norm = real
    cutoff = norm.duplicate_threshold  # the single-comparison cut-off: many rows of each speaker reach it
    want_rows = got_rows = 0
    for j, q in enumerate(queries[:100]):
        stats = (float(qm[j]), float(qs[j]))
        want = exact.rank(q, k=5, query_stats=stats, at_least=cutoff, also_if_cosine=0.999)
        got = near.rank(q, k=5, query_stats=stats, at_least=cutoff, also_if_cosine=0.999)
        want_rows += len(want.names)
        got_rows += len(set(want.names) & set(got.names))
    assert want_rows > 100 and got_rows / want_rows >= 0.99
    many_near = near.matches(queries[:100], query_stats=(qm[:100], qs[:100]), at_least=cutoff, also_if_cosine=0.999,
                             k=5)
    many_exact = exact.matches(queries[:100], query_stats=(qm[:100], qs[:100]), at_least=cutoff,
                               also_if_cosine=0.999, k=5)
    same = sum(len(set(a.names) & set(b.names)) for a, b in zip(many_near, many_exact, strict=True))
    assert same / sum(len(b.names) for b in many_exact) >= 0.99


def test_the_graph_answers_from_the_threshold_and_not_with_a_tag(real, monkeypatch: pytest.MonkeyPatch) -> None:
    near, _, queries, _, _ = real
    calls = []
    graph = near.neighbours.usable()
    original = graph.search
    monkeypatch.setattr(graph, "search", lambda q, k: calls.append(k) or original(q, k))
    near.rank(queries[0], k=10)
    near.matches(queries[:3], query_stats=None, at_least=0.9, k=5)
    assert calls == [ann.candidates_for(10), ann.candidates_for(5)]
    near.rank(queries[0], k=10, tag="narrator")  # a tag: exact
    assert len(calls) == 2
    near.neighbours.ann_from = len(near) + 1  # below the threshold: exact
    try:
        near.rank(queries[0], k=10)
        assert len(calls) == 2
    finally:
        near.neighbours.ann_from = 1_000


def test_results_equal_exact_search_where_the_top_10_is_clear(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    rows = clustered(3_000, seed=1)
    store = fill_vectors(tmp_path, rows)
    near, exact = ready(VoiceIndex(store, ann_from=1_000)), VoiceIndex(store, ann_from=0)
    exact.refresh()
    rng = np.random.default_rng(2)
    for i in rng.choice(len(rows), size=30, replace=False):
        q = rows[i] + 0.01 * rng.standard_normal(256).astype(np.float32)
        want = exact.rank(q, k=10)
        assert np.diff(want.scores).min() < 0  # no ties
        got = near.rank(q, k=10)
        assert got.names == want.names and np.array_equal(got.scores, want.scores)
        assert near.rank(q, k=3, exclude=want.names[0]).names == want.names[1:4]


def test_saved_graph_is_loaded_and_caught_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("usearch")
    rows = clustered(3_000, seed=5)
    store = fill_vectors(tmp_path, rows)
    first = ready(VoiceIndex(store, ann_from=1_000))
    saved = ann.newest_file(store.cache_dir)
    assert saved is not None and saved[1] == first.seq
    for i in range(0, 300, 3):  # changes made since the file was written: removed, added
        store.remove(f"voice-{i:07d}")
    extra = clustered(200, seed=6)
    fill_vectors(tmp_path, extra, start=10_000)

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the saved graph should have been loaded, not rebuilt")

    monkeypatch.setattr(ann.Graph, "build", no_build)
    second = VoiceIndex(store, ann_from=1_000)
    second.refresh()
    graph = second.neighbours.usable()
    assert graph is not None and len(graph) == len(second) == 3_000 - 100 + 200
    assert graph.seq == second.seq > saved[1]
    exact = VoiceIndex(store, ann_from=0)
    exact.refresh()
    for q in (extra[7], extra[150], rows[301]):
        assert second.rank(q, k=5).names == exact.rank(q, k=5).names
    assert "voice-0000003" not in second.rank(rows[3], k=20).names
    store.remove("voice-0010007")  # and it keeps following
    second.refresh()
    assert "voice-0010007" not in second.rank(extra[7], k=5).names and len(graph) == len(second)


@pytest.mark.parametrize("damage", ["garbage", "foreign"])
def test_a_damaged_or_foreign_file_is_rebuilt(tmp_path: Path, damage: str) -> None:
    pytest.importorskip("usearch")
    store = fill_vectors(tmp_path / "lib", clustered(2_000, seed=7))
    cache = store.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    if damage == "garbage":
        (cache / "voice-graph-1.usearch").write_bytes(b"not a graph" * 100)
    else:  # another library's graph, saved at a sequence this catalogue has not reached
        other = ann.Graph.build(np.arange(1, 2_001), clustered(2_000, seed=8), seq=10**6)
        other.save(cache)
    index = ready(VoiceIndex(store, ann_from=1_000))
    graph = index.neighbours.usable()
    assert graph is not None and len(graph) == 2_000 and graph.seq == index.seq
    newest = ann.newest_file(cache)
    assert newest is not None and newest[1] == index.seq  # the rebuilt graph replaced the bad file
    assert [p.name for p in cache.glob("voice-graph-*")] == [newest[0].name]


def test_without_usearch_search_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "usearch", None)  # not importable
    monkeypatch.setitem(sys.modules, "usearch.index", None)
    assert not ann.available()
    store = fill_vectors(tmp_path, clustered(500, seed=9))
    index = VoiceIndex(store)
    index.refresh()
    assert index.neighbours is None and index.rank(clustered(500, seed=9)[4], k=1).names == ["voice-0000004"]
    with pytest.raises(MissingDependencyError, match="voicebank\\[ann\\]"):
        VoiceIndex(store, ann_from=100)
    with pytest.raises(MissingDependencyError):
        ann.Graph.new()


SAVER = """
import sys
from pathlib import Path
from vector_fixtures import clustered, fill_vectors
from voicebank.library import neighbours
from voicebank.library.index import VoiceIndex
from voicebank.store.store import VoiceStore

neighbours.SAVE_AT_EXIT = int(sys.argv[2])
root = Path(sys.argv[1])
index = VoiceIndex(VoiceStore(root), ann_from=1_000)
index.refresh()
assert index.neighbours.usable() is not None, "the saved graph is loaded"
fill_vectors(root, clustered(50, seed=int(sys.argv[3])), start=int(sys.argv[3]) * 1_000)
index.refresh()
print(index.seq)
"""


def test_a_process_saves_the_graph_as_it_exits_when_enough_changed(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    store = fill_vectors(tmp_path, clustered(2_000, seed=10))
    first = ready(VoiceIndex(store, ann_from=1_000))
    tests = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}

    def run(save_at_exit: int, seed: int) -> int:
        done = subprocess.run([sys.executable, "-c", SAVER, str(tmp_path), str(save_at_exit), str(seed)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    run(1_000, seed=11)  # 50 changes, fewer than it takes: the file stays as it was
    newest = ann.newest_file(store.cache_dir)
    assert newest is not None and newest[1] == first.seq
    seq = run(10, seed=12)  # 50 changes, enough: saved at exit, as of the process's last refresh
    newest = ann.newest_file(store.cache_dir)
    assert newest is not None and newest[1] == seq > first.seq
    again = VoiceIndex(store, ann_from=1_000)  # the saved graph holds the changes still queued at exit
    again.refresh()
    graph = again.neighbours.usable()
    assert graph is not None and graph.seq == seq and len(graph) == 2_100 and again.neighbours.queued() == 0


def _added_one_by_one(root: Path, index: VoiceIndex, rows: np.ndarray, start: int) -> None:
    for k in range(len(rows)):  # as adds do: commit, then catch up
        fill_vectors(root, rows[k: k + 1], start=start + k)
        index.catch_up()


def test_changes_reach_the_graph_on_a_background_thread(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    store = fill_vectors(tmp_path, clustered(2_000, seed=13))
    index = ready(VoiceIndex(store, ann_from=1_000))
    nb = index.neighbours
    extra = clustered(20, seed=14)
    _added_one_by_one(tmp_path, index, extra, 20_000)
    deadline = time.monotonic() + 60
    while nb.applied_in_background < 20 and time.monotonic() < deadline:  # no search asks for them
        time.sleep(0.01)
    assert nb.applied_in_background == 20 and nb.queued() == 0 and len(nb.graph) == 2_020
    assert index.rank(extra[5], k=1).names == ["voice-0020005"]


def test_a_search_applies_what_is_still_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("usearch")
    store = fill_vectors(tmp_path, clustered(2_000, seed=15))
    index = ready(VoiceIndex(store, ann_from=1_000))
    nb = index.neighbours
    monkeypatch.setattr(neighbours.Neighbours, "_apply_in_background", lambda self: None)  # a thread too slow
    extra = clustered(10, seed=16)
    _added_one_by_one(tmp_path, index, extra, 30_000)
    assert nb.queued() == 10 and len(nb.graph) == 2_000
    assert index.rank(extra[3], k=1).names == ["voice-0030003"]  # the search waited for them
    assert nb.queued() == 0 and len(nb.graph) == 2_010 and nb.applied_in_background == 0
    store.remove("voice-0030003")
    index.catch_up()
    assert nb.queued() == 1
    assert "voice-0030003" not in index.rank(extra[3], k=5).names and len(nb.graph) == 2_009


def _wait_in_step(nb: neighbours.Neighbours, want: int) -> None:
    deadline = time.monotonic() + WAIT
    while (nb.behind or nb.graph is None or len(nb.graph) != want) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not nb.behind and nb.graph is not None and len(nb.graph) == want


def test_a_graph_that_falls_behind_is_caught_up_in_the_background(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """More changes than may be queued (a bulk import's chunk): no writer waits, searches are exact meanwhile."""
    pytest.importorskip("usearch")
    store = fill_vectors(tmp_path, clustered(3_000, seed=17))
    index = ready(VoiceIndex(store, ann_from=1_000))
    nb = index.neighbours
    monkeypatch.setattr(neighbours, "MAX_QUEUED", 25)
    monkeypatch.setattr(neighbours, "CATCH_UP_STEP", 7)  # several steps
    catching_up = threading.Event()  # the background thread waits for it
    work = neighbours.Neighbours._apply_in_background
    monkeypatch.setattr(neighbours.Neighbours, "_apply_in_background",
                        lambda self: catching_up.wait(WAIT) and work(self))
    extra = clustered(30, seed=18)
    fill_vectors(tmp_path, extra[:20], start=40_000)
    index.catch_up()
    assert nb.queued() == 20 and not nb.behind
    fill_vectors(tmp_path, extra[20:], start=40_020)
    store.remove("voice-0000005")
    index.catch_up()  # 20 queued + 11 more > 25: behind, the queue dropped, nothing applied here
    assert nb.behind and nb.queued() == 0 and nb.usable() is None
    calls = []
    monkeypatch.setattr(nb.graph, "search", lambda q, k: calls.append(k))
    assert index.rank(extra[25], k=1).names == ["voice-0040025"] and calls == []  # exact
    monkeypatch.delattr(nb.graph, "search")
    catching_up.set()
    _wait_in_step(nb, 3_000 + 30 - 1)
    assert nb.applied_in_background == 31  # in steps of 7, the dropped queue's 20 too
    assert nb.graph.seq == index.seq and nb.usable() is not None
    exact = VoiceIndex(store, ann_from=0)
    exact.refresh()
    for q in (extra[3], extra[27], clustered(3_000, seed=17)[5]):
        assert index.rank(q, k=5).names == exact.rank(q, k=5).names


def test_a_graph_too_far_behind_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("usearch")
    store = fill_vectors(tmp_path, clustered(2_000, seed=19))
    index = ready(VoiceIndex(store, ann_from=1_000))
    nb = index.neighbours
    monkeypatch.setattr(neighbours, "MAX_QUEUED", 25)
    fill_vectors(tmp_path, clustered(2_100, seed=20), start=50_000)  # more than max(2,000, a tenth) changes
    index.catch_up()
    _wait_in_step(nb, 4_100)
    assert nb.applied_in_background == 0 and nb.graph.seq == index.seq  # rebuilt, not caught up


def test_a_forked_child_drops_the_graph_and_loads_its_own(tmp_path: Path) -> None:
    """A fork while the background thread holds the graph (half changed, its lock held) must not hang the child."""
    pytest.importorskip("usearch")
    store = fill_vectors(tmp_path, clustered(2_000, seed=21))
    index = ready(VoiceIndex(store, ann_from=1_000))
    nb = index.neighbours
    with nb._graph_lock:  # as the thread holds it while it applies a change
        pid = os.fork()
        if pid == 0:  # the child: exit codes only (no pytest in here)
            code = 3
            try:
                code = 1 if nb.graph is not None else 2
                index.refresh()  # loads the saved graph again
                graph = nb.usable()
                code = 0 if graph is not None and len(graph) == 2_000 else 4
            finally:
                os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung (waiting for a lock its parent's thread held)")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert nb.usable() is not None  # the parent's graph is as it was
