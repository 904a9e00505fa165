""":class:`Neighbours`: a :class:`~.ann.Graph` kept in step with a :class:`~.index.VoiceIndex`, for searches and
duplicate checks at 10^5-10^6 voices.

The graph is used while the index holds at least ``ann_from`` voices and usearch is installed; otherwise (and
while a graph is being built) every search is exact.  It follows the index: each change the index applies
(voices added, removed or changed, by id) is applied to the graph, from the index's own rows, so the graph
holds exactly the index's live voices whenever it is searched.  The changes are applied on a background thread
(usearch releases the GIL: an add's graph insert, 1-2 ms at 10^6 voices, runs on the other core while the
caller goes on), and :meth:`Neighbours.usable` waits for those still queued before it hands the graph out.
When more than :data:`MAX_QUEUED` pile up (a bulk import without duplicate checks, or another process's), the
graph falls *behind*: only the changed ids are kept, searches are exact, and the thread catches the graph up a
step at a time from the index's rows (or rebuilds it once a tenth of it changed), so no writer waits for it.

Persistence: the graph is saved in the library's cache directory with the ``vector_log`` sequence it reflects.
The first process to need it loads the newest file and catches up from the log (the ids changed since), then
checks it: as many voices as the index, and a sample of them with the index's vectors.  A missing, unreadable,
foreign or too stale file (more than a tenth of the voices changed since) is rebuilt from the index's rows in a
background thread (minutes at 10^6 voices on two cores) while searches stay exact, then saved.  The graph is
saved again once a twentieth of it (at least 1,000 voices) has changed since the last save, so the next process
has little to catch up with.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..store.vectors import changed_since
from .ann import Graph

log = logging.getLogger(__name__)

SAMPLE = 32
"""Voices whose vectors are compared with the index's when a saved graph is loaded."""

MAX_QUEUED = 2_000
"""Changed voices the background thread may have waiting (with copies of their vectors) before the graph falls
behind (see the module docstring): a search waits for at most this many graph inserts (about 2 s at 10^6)."""
CATCH_UP_STEP = 1_000
"""Changed voices a graph that fell behind takes per step (the index's lock is held while their rows are read)."""
IDLE_S = 1.0
"""Seconds without changes after which the background thread ends (a new one starts with the next change)."""

SAVE_AT_EXIT = 1_000
"""Voices changed since the graph was last saved from which a process saves it as it exits, so that the next
process has little to catch up with (about a millisecond per voice at 10^6)."""

_EXITING = threading.Event()
_BUILDERS: set[threading.Thread] = set()
_LIVE: weakref.WeakSet[Neighbours] = weakref.WeakSet()


def _at_exit() -> None:
    global _FORK_HOOKED
    atexit.unregister(_stop_builds)  # registered once
    atexit.register(_stop_builds)
    if not _FORK_HOOKED:
        _FORK_HOOKED = True
        os.register_at_fork(after_in_child=_forked)


_FORK_HOOKED = False


def _forked() -> None:
    """In a forked child: the threads are gone (a graph may have been half changed, a lock left held), so each
    graph is dropped and loaded or built again there."""
    _BUILDERS.clear()
    for neighbours in list(_LIVE):
        neighbours.forget()


def _stop_builds() -> None:
    """At exit: stop the graph builds between two chunks and the threads applying changes between two batches (a
    thread killed inside usearch aborts the process), then save the graphs that changed enough since their last
    save (their queued changes applied first)."""
    _EXITING.set()
    for neighbours in list(_LIVE):
        neighbours.wake()
    for thread in list(_BUILDERS):
        thread.join(timeout=60)
    for neighbours in list(_LIVE):
        neighbours.save_at_exit()


class Rows(Protocol):
    """What the graph follows: the live voices of a :class:`~.index.VoiceIndex`."""

    def __len__(self) -> int: ...

    @property
    def seq(self) -> int:
        """The ``vector_log`` sequence number the rows reflect."""
        ...

    def live(self, *, as_kept: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, unit vectors)`` of every live voice (``as_kept``: float32, or bfloat16 bit patterns)."""
        ...

    def live_ids(self) -> np.ndarray:
        """The ids of every live voice."""
        ...

    def rows_for(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, unit vectors)`` of the live voices among ``ids``."""
        ...


class Neighbours:
    """The graph of an index's voices, or ``None`` while there is none to use (see the module docstring).

    Every method is called with ``lock`` held (the index's lock); the background build takes it to install.  The
    graph itself is changed only with ``_graph_lock`` held (by the thread applying queued changes, or by
    :meth:`usable` applying them itself); the queue has a lock of its own, taken after that one.
    """

    def __init__(self, rows: Rows, lock: threading.RLock, cache_dir: Path | None, ann_from: int,
                 catalogue: Any) -> None:
        self._rows = rows
        self._lock = lock
        self._dir = cache_dir
        self._catalogue = catalogue
        self.ann_from = ann_from
        self.graph: Graph | None = None
        self._tried_load = False
        self._builder: threading.Thread | None = None
        self._unsaved = 0
        self.built = threading.Event()  # set whenever a graph is installed (for tests and benchmarks)
        self._graph_lock = threading.Lock()
        self._queue = threading.Condition(threading.Lock())
        self._queued: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (seq, ids, live ids, vectors)
        self._queued_rows = 0
        self._behind = False  # the graph fell behind: the background thread catches it up from the index
        self._behind_ids: set[int] = set()  # (then) the voices changed since it fell behind, not yet applied
        self._applier: threading.Thread | None = None
        self.applied_in_background = 0  # changed voices the background thread applied (for tests and benchmarks)
        _LIVE.add(self)

    def usable(self) -> Graph | None:
        """The graph, when searches should go through it (every queued change applied; ``None`` while it is
        behind)."""
        if self.graph is not None and len(self._rows) >= self.ann_from and not self._behind:
            self.drain()
            return self.graph
        return None

    @property
    def behind(self) -> bool:
        """Whether the graph fell behind the index and is being caught up (searches are exact meanwhile)."""
        return self._behind

    def queued(self) -> int:
        """Changed voices not yet applied to the graph."""
        with self._queue:
            return self._queued_rows

    def drain(self) -> None:
        """Apply every queued change now (waiting for the background thread's batch in flight, if any)."""
        with self._graph_lock:
            self._apply_queued()

    def forget(self) -> None:
        """Start again without a graph (after a fork: see :func:`_forked`)."""
        self._graph_lock = threading.Lock()
        self._queue = threading.Condition(threading.Lock())
        self._builder = self._applier = None
        self.graph, self._tried_load = None, False
        self._queued, self._queued_rows, self._behind, self._behind_ids = [], 0, False, set()

    def wake(self) -> None:
        """Wake the background thread (to see that the process is exiting)."""
        with self._queue:
            self._queue.notify_all()

    def follow(self, conn: Any, seq: int, changed: list[int] | None) -> None:
        """The index is now at ``seq``, having applied ``changed`` (ids; ``None``: it read everything again)."""
        if len(self._rows) < self.ann_from:
            self._drop_graph()
            self._tried_load = False
            return
        if self.graph is not None:
            if changed is None:
                self._drop_graph()
                self._start_build(seq)
            else:
                self._enqueue(seq, changed)
                self._unsaved += len(changed)
                if self._unsaved >= max(1_000, len(self._rows) // 20):
                    self._save_later()
            return
        if self._builder is not None:
            return  # the build catches up when it is done
        if not self._tried_load:
            self._tried_load = True
            graph = self._load(conn, seq)
            if graph is not None:
                self._install(graph)
                if self._unsaved >= max(1_000, len(self._rows) // 20):
                    self._save_later()
                return
        self._start_build(seq)

    # --- the graph in step with the rows -------------------------------------------------------------------

    def _apply(self, graph: Graph, ids: list[int]) -> None:
        """Voices changed: the removed ones go, the new ones come, a changed vector is replaced (a rename or new
        statistics leave the graph as it is)."""
        live_ids, vectors = self._rows.rows_for(ids)
        _apply_rows(graph, np.asarray(ids, dtype=np.int64), live_ids, vectors)

    def _drop_graph(self) -> None:
        with self._graph_lock, self._queue:
            self.graph = None
            self._queued.clear()
            self._queued_rows = 0
            self._behind = False
            self._behind_ids = set()

    def _enqueue(self, seq: int, ids: list[int]) -> None:
        """Queue the voices changed up to ``seq`` (with copies of their rows, read now) for the background thread,
        or let the graph fall behind when :data:`MAX_QUEUED` would be passed (only the ids are kept then)."""
        rebuild = False
        with self._queue:
            if not self._behind and self._queued_rows + len(ids) > MAX_QUEUED:
                for _, queued, _, _ in self._queued:
                    self._behind_ids.update(queued.tolist())
                self._queued.clear()
                self._queued_rows = 0
                self._behind = True
            if self._behind:
                self._behind_ids.update(int(i) for i in ids)
                rebuild = len(self._behind_ids) > max(2_000, len(self._rows) // 10)  # rebuilding is cheaper
            else:
                live_ids, vectors = self._rows.rows_for(ids)
                self._queued.append((seq, np.asarray(ids, dtype=np.int64), live_ids, vectors))
                self._queued_rows += len(ids)
            if not rebuild and not _EXITING.is_set():  # (exiting: the exit hook saves the graph as it is)
                if self._applier is None or not self._applier.is_alive():
                    self._applier = threading.Thread(target=self._apply_in_background, name="voicebank-graph-apply",
                                                     daemon=True)
                    _at_exit()
                    _BUILDERS.add(self._applier)
                    self._applier.start()
                else:
                    self._queue.notify_all()
        if rebuild:
            log.info("the voice graph fell %d voices behind; it is rebuilt", len(self._behind_ids))
            self._drop_graph()
            self._start_build(seq)

    def _apply_queued(self) -> int:
        """Apply every queued change (``_graph_lock`` held); how many voices."""
        with self._queue:
            batch, self._queued, self._queued_rows = self._queued, [], 0
        if self.graph is None:
            return 0
        for seq, ids, live_ids, vectors in batch:
            _apply_rows(self.graph, ids, live_ids, vectors)
            self.graph.seq = seq
        return sum(len(ids) for _, ids, _, _ in batch)

    def _catch_up_step(self) -> None:
        """Apply the next :data:`CATCH_UP_STEP` voices changed since a graph fell behind, from the index's rows;
        once none are left, the graph is in step again (as of the index's sequence number)."""
        with self._lock:  # the index's rows stay as read, and no search or follow runs meanwhile
            graph = self.graph
            with self._queue:
                if graph is None or not self._behind:
                    return
                if not self._behind_ids:  # every earlier step applied: in step
                    graph.seq = self._rows.seq
                    self._behind = False
                    return
                ids = [self._behind_ids.pop() for _ in range(min(CATCH_UP_STEP, len(self._behind_ids)))]
            live_ids, vectors = self._rows.rows_for(ids)
        with self._graph_lock:
            if self.graph is graph:  # not dropped meanwhile
                _apply_rows(graph, np.asarray(ids, dtype=np.int64), live_ids, vectors)
                self.applied_in_background += len(ids)

    def _apply_in_background(self) -> None:
        try:
            while True:
                with self._queue:
                    if not self._queued and not self._behind and not _EXITING.is_set():
                        self._queue.wait(timeout=IDLE_S)
                    if (not self._queued and not self._behind) or _EXITING.is_set():  # idle (a new thread starts
                        self._applier = None  # with the next change), or exiting (the exit hook saves the graph)
                        return
                    behind = self._behind
                if behind:
                    self._catch_up_step()
                else:
                    with self._graph_lock:
                        self.applied_in_background += self._apply_queued()
        except Exception:  # the graph is left as it was: searches stop using it until it is rebuilt
            log.exception("applying changes to the voice graph failed; it is rebuilt")
            self._drop_graph()
            with self._queue:
                self._applier = None
        finally:
            _BUILDERS.discard(threading.current_thread())

    def _catch_up(self, graph: Graph, conn: Any, seq: int) -> bool:
        """Bring a graph saved (or built) at ``graph.seq`` to the rows at ``seq``; ``False``: it cannot be."""
        if graph.seq > seq:
            return False  # newer than the catalogue: not this catalogue's graph
        _, ids = changed_since(conn, graph.seq, limit=max(2_000, len(self._rows) // 10))
        if ids is None:
            return False
        self._apply(graph, ids)
        self._unsaved += len(ids)
        graph.seq = seq
        return True

    def _consistent(self, graph: Graph) -> bool:
        if len(graph) != len(self._rows):
            return False
        ids = self._rows.live_ids()
        pick = np.random.default_rng(len(ids)).choice(len(ids), size=min(SAMPLE, len(ids)), replace=False)
        sample, vectors = self._rows.rows_for(ids[pick])  # only the sample's vectors are copied
        return len(sample) == len(pick) and bool(graph.holds(sample, vectors).all())

    def _load(self, conn: Any, seq: int) -> Graph | None:
        if self._dir is None:
            return None
        graph = Graph.load(self._dir)
        if graph is None:
            return None
        self._unsaved = 0
        if not self._catch_up(graph, conn, seq) or not self._consistent(graph):
            log.info("%s: the saved graph does not match the library, it is rebuilt", self._dir)
            return None
        return graph

    def _install(self, graph: Graph) -> None:
        self.graph = graph
        self.built.set()
        _LIVE.add(self)
        _at_exit()

    def save_at_exit(self) -> None:
        """Save the graph if at least :data:`SAVE_AT_EXIT` voices changed since its last save (skipped when
        another thread holds the index for more than 5 s)."""
        if self.graph is None or self._unsaved < SAVE_AT_EXIT or not self._lock.acquire(timeout=5):
            return
        try:
            self._save()
        finally:
            self._lock.release()

    # --- building and saving in the background ---------------------------------------------------------------

    def _start_build(self, seq: int) -> None:
        if self._builder is not None:
            return
        ids, vectors = self._rows.live(as_kept=True)  # widened a chunk at a time by the build
        self.built.clear()
        self._builder = threading.Thread(target=self._build, args=(ids, vectors, seq), name="voicebank-graph",
                                         daemon=True)
        _at_exit()
        _BUILDERS.add(self._builder)
        self._builder.start()

    def _build(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        try:
            graph = Graph.build(ids, vectors, seq, stop=_EXITING)
            del ids, vectors
            if graph is None:
                return
            with self._lock, self._catalogue.read() as conn:
                self._builder = None
                current = self._rows.seq
                if len(self._rows) < self.ann_from:
                    return
                self._unsaved = 0
                if not self._catch_up(graph, conn, current):
                    self._start_build(current)
                    return
                self._install(graph)
                self._save()
        except Exception:  # a failed build leaves exact search in place
            log.exception("building the voice graph failed; searches stay exact")
            with self._lock:
                self._builder = None
        finally:
            _BUILDERS.discard(threading.current_thread())

    def _save_later(self) -> None:
        self._unsaved = 0
        thread = threading.Thread(target=self._save_locked, name="voicebank-graph-save", daemon=True)
        _at_exit()
        _BUILDERS.add(thread)  # waited for at exit too
        thread.start()

    def _save_locked(self) -> None:
        try:
            with self._lock:
                self._save()
        finally:
            _BUILDERS.discard(threading.current_thread())

    def _save(self) -> None:
        if self.graph is None or self._dir is None:
            return
        try:
            with self._graph_lock:  # as of what it holds: the queued changes applied, a graph behind as it is
                self._apply_queued()
                self.graph.save(self._dir)
            self._unsaved = 0
        except OSError as e:  # a read-only library: each process builds its own
            log.warning("%s: could not save the voice graph (%s)", self._dir, e)


def _apply_rows(graph: Graph, ids: np.ndarray, live_ids: np.ndarray, vectors: np.ndarray) -> None:
    """Voices ``ids`` changed; ``live_ids`` of them have ``vectors`` now, the others are gone."""
    same = graph.holds(live_ids, vectors)
    graph.remove(np.setdiff1d(ids, live_ids[same]))
    graph.add(live_ids[~same], vectors[~same])


__all__ = ["Neighbours", "Rows"]
