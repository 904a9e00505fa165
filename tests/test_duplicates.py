"""Duplicate-speaker thresholds that grow with the library: monotone, reproduced from the set that chose them,
and, on the report set of real speech (``tests/data/duplicates``, other speakers), at most 5 % of adds of a new
speaker warned about at every size from 10 to 10^6, with the old fixed thresholds failing there."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from voicebank.cohort import builtin_cohort_files
from voicebank.duplicates import (
    COSINE_TAIL,
    FALSE_WARNING_RATE,
    SCORE_TAIL,
    Tail,
    caught_rate,
    duplicate_cosine,
    duplicate_threshold,
    exceedance,
    false_warning_rate,
    fit_tail,
)
from voicebank.similarity import DUPLICATE_COSINE, DUPLICATE_THRESHOLD

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "duplicates"
SIZES = [10, 100, 1_000, 10_000, 100_000, 1_000_000]
OLD = {"score": 4.5, "cosine": 0.80}


@pytest.fixture(scope="module")
def bench():
    """``benchmarks/duplicates.py``, which loads the data set and scores it."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import duplicates
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return duplicates


@pytest.fixture(scope="module")
def sets(bench):
    """``{"choose": {...}, "report": {...}}`` pair scores of adds into libraries drawn from each set, as
    ``benchmarks/duplicates.py`` computes them."""
    rows, emb, builtin = bench.load(DATA)
    return {which: bench.pairs(rows, emb, builtin, which) for which in ("choose", "report")}


def test_thresholds_grow_with_the_library_from_the_single_comparison_ones():
    sizes = [1, 2, 5, 10, 50, 100, 1_000, 10**4, 10**5, 10**6, 10**7]
    for f, base in ((duplicate_threshold, DUPLICATE_THRESHOLD), (duplicate_cosine, DUPLICATE_COSINE)):
        t = [f(n) for n in sizes]
        assert t[0] == pytest.approx(base) and all(b > a for a, b in itertools.pairwise(t))
        assert f(0) == f(1)
    assert DUPLICATE_THRESHOLD == SCORE_TAIL.start and DUPLICATE_COSINE == COSINE_TAIL.start
    # a chosen single-comparison threshold is raised by the same amount; +-inf stay put
    assert duplicate_threshold(1_000, base=2.0) - 2.0 == pytest.approx(duplicate_threshold(1_000) - DUPLICATE_THRESHOLD)
    assert duplicate_threshold(10**6, base=float("-inf")) == float("-inf")
    # linear in log n: a decade of voices costs scale * log(10)
    assert duplicate_threshold(10**5) - duplicate_threshold(10**4) == pytest.approx(SCORE_TAIL.scale * np.log(10))


def test_the_tail_model_keeps_the_per_add_rate_at_the_target():
    tail = Tail(start=1.0, scale=0.5)
    for n in SIZES:
        p = tail.exceedance(tail.threshold(n))
        assert p == pytest.approx(FALSE_WARNING_RATE / n)
        assert false_warning_rate(p, n) <= FALSE_WARNING_RATE
    assert false_warning_rate(0.01, 100) == pytest.approx(1 - 0.99**100)
    rng = np.random.default_rng(0)
    fitted = fit_tail(rng.exponential(2.0, 200_000))
    assert fitted.scale == pytest.approx(2.0, rel=0.03) and fitted.mass == pytest.approx(0.05, rel=0.01)
    with pytest.raises(ValueError):
        fit_tail(np.zeros(5))


def test_the_shipped_tails_are_the_choose_sets(sets):
    for kind, shipped in (("score", SCORE_TAIL), ("cosine", COSINE_TAIL)):
        fit = fit_tail(sets["choose"][kind].impostor)
        assert fit.start == pytest.approx(shipped.start, abs=1e-3) and fit.scale == pytest.approx(shipped.scale,
                                                                                                   rel=2e-3)


def test_the_sets_share_no_speaker_and_both_are_their_own_cohort(bench):
    rows, emb, builtin = bench.load(DATA)
    by_set: dict[str, set[str]] = {"choose": set(), "report": set()}
    for r in rows:
        by_set[r["set"]].add(r["speaker_id"])
        assert r["license"] and 2.9 < float(r["end_s"]) - float(r["start_s"]) <= 5.0
    assert not by_set["choose"] & by_set["report"] and min(map(len, by_set.values())) >= 25
    assert emb.shape == (len(rows), 256) and builtin.shape == (len(builtin_cohort_files()), 256)


@pytest.mark.parametrize("kind", ["score", "cosine"])
def test_on_the_report_set_few_adds_name_another_speaker_at_any_size(sets, kind):
    p = sets["report"][kind]
    tail = fit_tail(p.impostor)
    new = duplicate_threshold if kind == "score" else duplicate_cosine
    for n in SIZES:
        assert false_warning_rate(exceedance(p.impostor, new(n), tail), n) <= FALSE_WARNING_RATE, n
    # the old fixed threshold: fine in a small library, a warning on most adds in a large one
    old = [float(false_warning_rate(exceedance(p.impostor, OLD[kind], tail), n)) for n in SIZES]
    assert old[0] <= FALSE_WARNING_RATE and old[3] > 0.5 and old[-1] > 0.99


@pytest.mark.parametrize("kind", ["score", "cosine"])
def test_on_the_report_set_re_added_speakers_are_caught_in_small_libraries(sets, kind):
    p = sets["report"][kind]
    tail = fit_tail(p.impostor)
    new = duplicate_threshold if kind == "score" else duplicate_cosine
    for n in (10, 100):  # the targets hold together up to here (docs/duplicates.md)
        assert caught_rate(p.other_utterance, p.impostor, n, new(n), tail) >= 0.70
    # what no threshold can change: at 10^6 voices another speaker outscores most re-added ones
    assert caught_rate(p.other_utterance, p.impostor, 10**6, None, tail) < 0.70
