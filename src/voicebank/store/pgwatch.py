"""Following a shared catalogue's generation counter from a thread of its own, for long-running processes.

Every write transaction increments ``voicebank_meta.generation``.  A server that revalidates cached answers on
every request (``voicebank serve``) would otherwise read that counter once per request, on its event loop;
:class:`GenerationWatch` reads it every ``interval_s`` (one single-row ``SELECT`` on a connection of its own,
autocommit), so a request only looks at the last value read.  Another host's commit is seen within one interval.

The watch is also the process's view of whether the database can be reached: a poll that fails marks it
*down* (the catalogue then fails reads at once instead of queueing them for a connection), and the first poll
that succeeds again marks it *up*.  ``on_change(up)`` is called from the watch's thread at each transition.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import LibraryUnavailableError

log = logging.getLogger(__name__)

POLL_S = 0.1
"""How often the generation is read (seconds): another host's commit is seen within this long."""
RETRY_S = 0.25
"""How often a watch that is down tries to reconnect (seconds)."""
STALE_S = 2.0
"""A value older than this (a poll stuck on a database that stopped answering) is not trusted."""


class GenerationWatch:
    """The last generation read from the catalogue, refreshed every ``interval_s`` by a daemon thread.

    ``connect``: a new autocommit connection (psycopg); ``where``: what messages call the catalogue;
    ``on_change(up)``: called (from the watch's thread) when the database stops or starts answering."""

    def __init__(self, connect: Callable[[], Any], *, where: str, interval_s: float = POLL_S,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self._connect = connect
        self.where = where
        self.interval_s = interval_s
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._value = 0
        self._at = 0.0
        self._problem: str | None = "not started"
        self.polls = 0

    def __repr__(self) -> str:
        return f"GenerationWatch({self.where!r}, up={self.up})"

    # --- reading -----------------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Whether the last poll succeeded, recently."""
        with self._lock:
            return self._problem is None and time.monotonic() - self._at <= STALE_S

    def value(self) -> int:
        """The generation last read; :class:`LibraryUnavailableError` while the database cannot be reached (or
        the last successful read is older than :data:`STALE_S`)."""
        with self._lock:
            problem, value, age = self._problem, self._value, time.monotonic() - self._at
        if problem is None and age > STALE_S:
            problem = f"no answer for {age:.1f} s"
        if problem is not None:
            raise self.unavailable(problem)
        return value

    def unavailable(self, problem: str | None = None) -> LibraryUnavailableError:
        """The error a read gets while the database is down."""
        with self._lock:
            problem = problem or self._problem or "no answer"
        return LibraryUnavailableError(f"cannot reach the library catalogue at {self.where} ({problem}); check "
                                       "that the database server is up and the URL is right")

    # --- polling -----------------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Read the generation once (on the calling thread); whether it succeeded."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            row = self._conn.execute("SELECT generation FROM voicebank_meta").fetchone()
            value, problem = int(row[0]), None
        except Exception as e:  # any failure means "cannot say": the database or the network is down
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            value, problem = 0, text
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self.polls += 1
        self._set(value, problem)
        return problem is None

    def report(self, problem: str) -> None:
        """A transaction of this process lost its connection: the database is down until a poll reads the
        generation again (so the replica stops answering from memory at once, not at the next poll)."""
        self._set(0, problem)

    def _set(self, value: int, problem: str | None) -> None:
        with self._lock:
            was_up = self._problem is None
            self._problem = problem
            if problem is None:
                self._value, self._at = value, time.monotonic()
        if was_up != (problem is None) and self._thread is not None:
            if problem is None:
                log.warning("the library catalogue at %s answers again", self.where)
            else:
                log.error("the library catalogue at %s cannot be reached: %s", self.where, problem)
            if self._on_change is not None:
                self._on_change(problem is None)

    def start(self) -> GenerationWatch:
        """Read once now, then keep reading in a daemon thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self.poll()
            self._thread = threading.Thread(target=self._run, name="voicebank-generation", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s if self._problem is None else RETRY_S):
            self.poll()

    def stop(self) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


__all__ = ["POLL_S", "STALE_S", "GenerationWatch"]
