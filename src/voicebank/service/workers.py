"""Extraction off the event loop: a bounded pool of worker threads behind a bounded queue.

``workers`` jobs run at once; ``queue_size`` more may wait.  A job beyond that is refused at once with
429 and ``Retry-After`` (backpressure: the server never holds an unbounded backlog of uploads in memory);
while the pool is shutting down jobs are refused with 503.  Jobs with the same key (the same audio and
options) that overlap share one run: the second caller awaits the first one's result.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..models.torch_runtime import torch_installed
from .errors import ApiError
from .metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class ExtractionPool:
    """Runs blocking jobs in ``workers`` threads, at most ``workers + queue_size`` admitted at once.

    ``threads``: torch's intra-op threads while a job runs (torch has one such setting per process, which the
    I/O threads lower to 1, so it is set again, when different, as each job starts); ``None``: left alone."""

    def __init__(self, workers: int, queue_size: int, metrics: Metrics, threads: int | None = None) -> None:
        self.workers = int(workers)
        self.threads = threads
        self.capacity = int(workers) + int(queue_size)
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="voicebank-extract")
        self._admitted = 0
        self._running = 0
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._key_locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._closing = False
        self._mean_s = 1.0

    @property
    def queued(self) -> int:
        """Jobs admitted and waiting for a worker."""
        with self._lock:
            return self._admitted - self._running

    @property
    def running(self) -> int:
        """Jobs running in a worker now."""
        with self._lock:
            return self._running

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue's expected drain time, at least 1."""
        with self._lock:
            backlog = self._admitted
        return max(1, math.ceil(backlog * self._mean_s / max(1, self.workers)))

    def _admit(self) -> None:
        with self._lock:
            if self._closing:
                raise ApiError(503, "shutting_down", "the server is shutting down; retry on another instance",
                               headers={"Retry-After": "5"})
            if self._admitted >= self.capacity:
                full = True
            else:
                full = False
                self._admitted += 1
        if full:
            self.metrics.rejected.inc()
            raise ApiError(429, "queue_full", f"all {self.workers} extraction workers are busy and the queue is full; "
                           "retry later", headers={"Retry-After": str(self.retry_after())})

    async def run(self, kind: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker (429 when the queue is full); ``kind`` labels the latency metric."""
        self._admit()
        loop = asyncio.get_running_loop()

        def job() -> T:
            with self._lock:
                self._running += 1
            if self.threads and torch_installed():
                import torch

                if torch.get_num_threads() != self.threads:
                    torch.set_num_threads(self.threads)
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                dt = time.perf_counter() - t0
                with self._lock:
                    self._running -= 1
                    self._mean_s = 0.8 * self._mean_s + 0.2 * dt
                self.metrics.extraction.observe(dt, kind)

        try:
            return await loop.run_in_executor(self._executor, job)
        finally:
            with self._lock:
                self._admitted -= 1

    async def run_once(self, key: str, kind: str, fn: Callable[[], T]) -> T:
        """Like :meth:`run`, but overlapping calls with the same ``key`` share one run and its result."""
        fut = self._inflight.get(key)
        if fut is not None:
            result: T = await asyncio.shield(fut)
            return result
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self.run(kind, fn)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: a lone caller re-raises it below
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)

    async def serialized(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` with no other call of the same ``key`` overlapping (the second waits for the first)."""
        lock, users = self._key_locks.get(key, (asyncio.Lock(), 0))
        self._key_locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await fn()
        finally:
            lock, users = self._key_locks[key]
            if users <= 1:
                del self._key_locks[key]
            else:
                self._key_locks[key] = (lock, users - 1)

    def shutdown(self) -> None:
        """Refuse new jobs and wait for the admitted ones to finish (in-flight uploads are not cut)."""
        with self._lock:
            self._closing = True
        self._executor.shutdown(wait=True, cancel_futures=False)
        log.info("extraction pool stopped")
