"""ordered_map: results in input order, a bounded number of items ahead, failures handed over per item."""

from __future__ import annotations

import random
import threading
import time
from contextlib import closing

import pytest

from voicebank.ordered import ordered_map


def slow_square(x: int) -> int:
    time.sleep(random.uniform(0, 0.01))
    return x * x


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_come_in_input_order(workers):
    assert [f.result() for f in ordered_map(slow_square, range(40), workers=workers, ahead=5)] == [
        x * x for x in range(40)]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failure_is_handed_over_with_its_item_and_the_rest_go_on(workers):
    def fn(x: int) -> int:
        if x % 3 == 1:
            raise ValueError(f"bad {x}")
        return x

    out = []
    for f in ordered_map(fn, range(7), workers=workers, ahead=2):
        try:
            out.append(f.result())
        except ValueError as e:
            out.append(str(e))
    assert out == [0, "bad 1", 2, 3, "bad 4", 5, 6]


@pytest.mark.parametrize("ahead", [1, 3])
def test_at_most_ahead_items_beyond_the_one_taken(ahead):
    started: list[int] = []
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            started.append(x)
        return x

    for f in ordered_map(fn, range(20), workers=4, ahead=ahead):
        i = f.result()
        time.sleep(0.002)  # the workers would run on if nothing bounded them
        with lock:
            assert max(started) <= i + ahead


def test_workers_zero_runs_each_item_on_the_calling_thread_when_its_turn_comes():
    seen: list[tuple[int, threading.Thread]] = []
    taken = 0
    for f in ordered_map(lambda x: seen.append((x, threading.current_thread())), range(3), workers=0, ahead=2):
        f.result()
        taken += 1
        assert len(seen) == taken
    assert {t for _, t in seen} == {threading.current_thread()}


def test_closing_early_cancels_what_has_not_started():
    started: list[int] = []
    release = threading.Event()

    def fn(x: int) -> int:
        started.append(x)
        if x > 0:
            release.wait(5)  # item 1 is running when the caller stops
        return x

    with closing(ordered_map(fn, range(100), workers=1, ahead=10)) as results:
        assert next(results).result() == 0
        threading.Timer(0.2, release.set).start()
    # closing cancelled the queued items and waited for the running one (item 1, unless it had not started yet)
    assert started in ([0], [0, 1])
