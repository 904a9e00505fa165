"""A shared catalogue whose PostgreSQL server stops while many threads read and write through one
:class:`~voicebank.store.pgcatalogue.PgCatalogue` (issue 19): every request fails within seconds with
:class:`~voicebank.errors.LibraryUnavailableError` (never a wait of ``timeout`` seconds in the pool for a
connection), and every request succeeds again soon after the server is back, with or without the generation watch
that ``voicebank serve`` runs."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from voicebank.errors import LibraryUnavailableError
from voicebank.store.pgcatalogue import PgCatalogue

from cluster_fixtures import postgres_cluster, restart_postgres, stop_postgres

THREADS = 24
POOL = 4
"""Fewer connections than threads: requests queue in the pool, as under load on a replica."""
MAX_WAIT_S = 5.0
"""The longest a request may take while the database is down (the pool waits 60 s at most otherwise)."""


class Load:
    """``THREADS`` threads reading (and one in four writing) through ``cat`` until :meth:`stop`."""

    def __init__(self, cat: PgCatalogue) -> None:
        self.cat = cat
        self.lock = threading.Lock()
        self.log: list[tuple[float, float, str]] = []  # (start, seconds, outcome)
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(THREADS)]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(90)
        assert not any(t.is_alive() for t in self.threads), "a request thread is still waiting"

    def once(self, i: int) -> str:
        try:
            if i % 4 == 0:
                with self.cat.write() as conn:
                    conn.execute("UPDATE voicebank_meta SET version = version")
            else:
                with self.cat.read() as conn:
                    conn.execute("SELECT pg_sleep(0.005), count(*) FROM voices").fetchone()
                self.cat.generation()
        except LibraryUnavailableError:
            return "unavailable"
        except Exception as e:  # anything else is a failure of the test
            return f"{type(e).__name__}: {e}"
        return "ok"

    def run(self, i: int) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            outcome = self.once(i)
            with self.lock:
                self.log.append((started, time.monotonic() - started, outcome))
            if outcome != "ok":
                self._stop.wait(0.02)

    def since(self, t: float) -> list[tuple[float, float, str]]:
        with self.lock:
            return [e for e in self.log if e[0] >= t]


@pytest.mark.parametrize("watched", [True, False], ids=["watched", "unwatched"])
def test_a_stopped_database_fails_every_request_within_seconds_and_all_recover(watched: bool):
    with postgres_cluster() as pg:  # a cluster of this test's own: it is stopped and started again
        pg.execute("CREATE DATABASE voices TEMPLATE template0")
        cat = PgCatalogue(pg.url("voices"), pool_size=POOL)
        cat.migrate()
        if watched:
            cat.watch()
        running = pg.process
        load = Load(cat).start()
        try:
            time.sleep(1.0)
            assert Counter(e[2] for e in load.since(0)).keys() == {"ok"}
            stop_postgres(running)
            down = time.monotonic()
            time.sleep(8.0)
            running = restart_postgres(pg, running)
            up = time.monotonic()
            time.sleep(6.0 if watched else 12.0)
            load.stop()
            during = [e for e in load.since(down) if e[0] < up]
            outcomes = Counter(e[2] for e in during)
            assert set(outcomes) <= {"ok", "unavailable"}, outcomes
            assert outcomes["unavailable"] > THREADS, outcomes
            slowest = max(e[1] for e in load.since(down - 0.5))
            assert slowest < MAX_WAIT_S, (slowest, outcomes)
            late = [e for e in load.since(up + (3.0 if watched else 8.0))]
            assert late and Counter(e[2] for e in late).keys() == {"ok"}, Counter(e[2] for e in late)
            print(f"\n{'watched' if watched else 'unwatched'}: {dict(outcomes)} while down, slowest {slowest:.2f} s")
        finally:
            load.stop()
            cat.close()
            stop_postgres(running)
