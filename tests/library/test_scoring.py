"""Similarity at any size: the index catches up by reading only what changed, each voice's statistics are stored
with it, a search equals the brute-force reference, and adding, comparing and searching cost the same work on
10^3 and 10^5 voices (counted, never timed)."""

from __future__ import annotations

import numpy as np
import pytest

from voicebank.library import Library
from voicebank.library.scoring import EXACT_BELOW, SETTLED_FROM, needs_rebuild
from voicebank.similarity import ScoreNormaliser
from voicebank.store.vectors import CohortRecord

from faults import FakeEngine, clip
from scale_fixtures import counting, fill

SMALL, LARGE = 1_000, 100_000


def test_the_rebuild_policy():
    def record(n: int, fp: str = "fp") -> CohortRecord:
        return CohortRecord(1, fp, n, np.zeros((1, 256), np.float32), None, 20)

    assert needs_rebuild(None, 5, None)
    assert needs_rebuild(record(10, "old"), 10, "new") and not needs_rebuild(record(10, "old"), 10, None)
    assert needs_rebuild(record(10), 11, "fp") and needs_rebuild(record(EXACT_BELOW - 1), EXACT_BELOW + 5, "fp")
    assert not needs_rebuild(record(200), 299, "fp") and needs_rebuild(record(200), 300, "fp")
    assert not needs_rebuild(record(300), 201, "fp") and needs_rebuild(record(300), 200, "fp")
    assert not needs_rebuild(record(SETTLED_FROM), 10 * SETTLED_FROM, "fp")


def test_another_library_object_sees_every_change_by_reading_only_the_changes(tmp_path):
    engine = FakeEngine()
    writer, reader = Library(tmp_path, engine=engine), Library(tmp_path, engine=engine)
    for i in range(6):
        writer.add(clip(i), name=f"v{i}", mode="embedding")
    reader.search("v0")
    index = reader.scoring.index
    read = index.rows_read
    assert len(index) == 6
    writer.add(clip(10), name="new", mode="embedding")
    writer.rename("v1", "renamed")
    writer.remove("v2")
    names = {m.name for m in reader.search("v0", k=10)}
    assert names == {"v3", "v4", "v5", "new", "renamed"}  # v0 is the query, v2 is gone
    assert index.rows_read - read <= 3 + 6  # the changed rows (and, under 100 voices, the re-normalised ones)
    writer.close()
    reader.close()


def test_search_equals_the_brute_force_reference(tmp_path):
    lib = Library(tmp_path, engine=FakeEngine())
    for i in range(30):
        lib.add(clip(i), name=f"v{i:02d}", mode="embedding")
    got = lib.search("v07", k=10)
    # the reference: every voice scored one by one against the same cohort
    norm = lib.scoring.normaliser(lib.engine, "english")
    names = [n for n in lib.names() if n != "v07"]
    q = lib.vectors("v07")[0]
    ref = sorted(((norm.score(q, lib.vectors(n)[0]), n) for n in names), reverse=True)[:10]
    assert [m.name for m in got] == [n for _, n in ref]
    assert np.allclose([m.score for m in got], [s for s, _ in ref], rtol=1e-6, atol=1e-6)
    assert isinstance(norm, ScoreNormaliser)


def test_each_voice_keeps_its_statistics_and_a_v1_catalogue_gets_them(tmp_path):
    old = Library(tmp_path, engine=FakeEngine())
    for i in range(4):
        old.add(clip(i), name=f"v{i}", mode="embedding")
    with old.catalogue.write() as conn:  # back to what a voicebank of schema version 1 wrote
        for statement in ("DROP TRIGGER vector_log_insert", "DROP TRIGGER vector_log_delete",
                          "DROP TRIGGER vector_log_update", "DROP TABLE vector_log", "DROP TABLE cohorts",
                          "ALTER TABLE voices DROP COLUMN norm_mean", "ALTER TABLE voices DROP COLUMN norm_std",
                          "ALTER TABLE voices DROP COLUMN norm_cohort", "DROP INDEX voices_skeleton",
                          "ALTER TABLE voices DROP COLUMN skeleton", "PRAGMA user_version = 1"):
            conn.execute(statement)
    old.close()
    lib = Library(tmp_path, engine=FakeEngine())
    assert lib.catalogue.user_version() == 2
    assert [m.name for m in lib.search("v0", k=3)]  # scored against a cohort built now
    lib.add(clip(9), name="v9", mode="embedding")  # a write stores the cohort and every statistic
    with lib.catalogue.read() as conn:
        rows = conn.execute("SELECT name, norm_mean, norm_std, norm_cohort FROM voices ORDER BY name").fetchall()
        cohort = conn.execute("SELECT id, library_size FROM cohorts").fetchall()
    assert len(cohort) == 1 and all(r[1] is not None and r[2] > 0 and r[3] == cohort[0][0] for r in rows), rows


def test_a_read_only_library_is_searched_with_statistics_kept_in_memory(tmp_path):
    lib = Library(tmp_path, engine=FakeEngine())
    for i in range(5):
        lib.add(clip(i), name=f"v{i}", mode="embedding")
    lib.close()
    with Library(tmp_path, engine=FakeEngine()) as reader:
        with reader.catalogue.write() as conn:
            conn.execute("DELETE FROM cohorts")  # as if no writer ever stored one
            conn.execute("UPDATE voices SET norm_mean = NULL, norm_std = NULL, norm_cohort = NULL")
        before = reader.search("v0", k=4)
        with reader.catalogue.read() as conn:
            assert conn.execute("SELECT COUNT(*) FROM cohorts").fetchone()[0] == 0  # a search writes nothing
        assert [m.name for m in before] and all(np.isfinite(m.score) for m in before)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict[int, Library]:
    """Libraries of 10^3 and 10^5 random voices, each searched once (the one-time load and cohort)."""
    out = {}
    for n in (SMALL, LARGE):
        root = tmp_path_factory.mktemp(f"scale{n}")
        fill(root, n).close()
        lib = Library(root, engine=FakeEngine())
        lib.add(clip(1), name="first", mode="embedding")  # loads the index, builds and stores the cohort
        out[n] = lib
    return out


def cost(lib: Library, op) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(catalogue rows the index read, SQLite steps) of one ``op(lib)``."""
    before = lib.scoring.index.rows_read
    with counting(lib.store) as steps:
        op(lib)
        return lib.scoring.index.rows_read - before, steps()


def test_adding_a_voice_reads_only_itself(big):
    counter = iter(range(1000, 2000))

    def add(lib: Library) -> None:
        lib.add(clip(next(counter)), mode="embedding", name=f"added-{next(counter)}")

    add(big[SMALL]), add(big[LARGE])  # warm
    (rows_s, steps_s), (rows_l, steps_l) = cost(big[SMALL], add), cost(big[LARGE], add)
    assert rows_s == rows_l == 1, (rows_s, rows_l)  # the index read the new voice, nothing else
    assert steps_l <= 1.5 * steps_s + 5_000, (steps_s, steps_l)
    assert big[LARGE].scoring.rebuilds == 1  # the cohort was built once, at the first add


@pytest.mark.parametrize(("op", "catalogue_work_is_constant"), [
    pytest.param(lambda lib: lib.search("voice-0000123", k=10), True, id="search"),
    pytest.param(lambda lib: lib.compare("voice-0000123", "voice-0000456"), True, id="compare"),
    # a tag filter reads the tag's voice ids from the catalogue (an index range): it grows with the tag
    pytest.param(lambda lib: lib.search("voice-0000123", k=10, tag="narrator"), False, id="tagged search"),
])
def test_searching_and_comparing_read_no_voice_rows_at_any_size(big, op, catalogue_work_is_constant):
    op(big[SMALL]), op(big[LARGE])  # warm
    (rows_s, steps_s), (rows_l, steps_l) = cost(big[SMALL], op), cost(big[LARGE], op)
    assert rows_s == rows_l == 0  # the index is current: nothing is read again
    if catalogue_work_is_constant:
        assert steps_l <= 1.5 * steps_s + 5_000, (steps_s, steps_l)


def test_a_search_ranks_every_voice(big):
    lib = big[LARGE]
    hits = lib.search("voice-0099998", k=3)
    q = lib.vectors("voice-0099998")[0]
    norm = lib.scoring.normaliser(lib.engine, "english")
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
    assert hits[0].score == pytest.approx(norm.score(q, lib.vectors(hits[0].name)[0]), rel=1e-6, abs=1e-6)
