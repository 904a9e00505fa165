"""Work on worker threads, a bounded number of items ahead, taken in input order.

The engine decodes the next clips while the models run on the current ones, and ``Library.add_many`` prepares
clips on workers while its one writer commits them in order: both are :func:`ordered_map`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int,
                thread_name_prefix: str = "voicebank") -> Generator[Future[R], None, None]:
    """``fn(item)`` for each of ``items``, yielded in input order as finished futures.

    Each future's ``.result()`` is ``fn``'s value or raises ``fn``'s exception, so the caller decides: stop at
    the first failure in input order, or note it and go on.  ``fn`` runs on ``workers`` threads, at most
    ``ahead`` items (at least one) beyond the one being taken, so the work overlaps whatever the caller does
    with each result and memory stays bounded.  ``workers=0``: each item is computed on the calling thread when
    its turn comes.

    Closing the iterator early (``contextlib.closing``, or the generator being collected) cancels the items
    not yet started and waits for those running.
    """
    if workers <= 0:
        for item in items:
            done: Future[R] = Future()
            try:
                done.set_result(fn(item))
            except Exception as e:  # handed to the caller with its item, as a worker's would be
                done.set_exception(e)
            yield done
        return
    with ThreadPoolExecutor(workers, thread_name_prefix=thread_name_prefix) as pool:
        upcoming = iter(items)
        pending: deque[Future[R]] = deque(pool.submit(fn, item) for item in itertools.islice(upcoming, max(1, ahead)))
        try:
            while pending:
                current = pending.popleft()
                pending.extend(pool.submit(fn, item) for item in itertools.islice(upcoming, 1))
                current.exception()  # wait for it, whatever its outcome
                yield current
        finally:
            for future in pending:
                future.cancel()


__all__ = ["ordered_map"]
