"""The objects one service process owns (built once, in the app's lifespan) and hands to every request."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..engine import shared_engine
from ..errors import VoicebankError
from ..library import Library
from ..models.torch_runtime import torch_installed
from ..store.shared import SharedVoiceStore
from .cache import ConditionalsCache, LookupMemo
from .metrics import Metrics
from .revalidation import Generation, RevalidationIndex
from .security import KeyStore
from .settings import ServiceSettings
from .workers import ExtractionPool

log = logging.getLogger(__name__)

T = TypeVar("T")
IO_THREADS = 4


def _one_torch_thread() -> None:
    """Initializer of the I/O threads: torch's intra-op thread count is per calling thread, and the small
    tensors of a voice file (validation, serialisation) gain nothing from a parallel team, whose wake-up costs
    milliseconds on a busy machine.  Without torch, nothing to set."""
    if not torch_installed():
        return
    import torch

    torch.set_num_threads(1)


def io_executor() -> ThreadPoolExecutor:
    """The threads that read and serialise stored voices (not extraction: see :mod:`.workers`)."""
    return ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="voicebank-io", initializer=_one_torch_thread)


@dataclass
class Service:
    """The library (with its loaded extractors), the conditionals cache, the worker pool, keys and metrics."""

    settings: ServiceSettings
    _library: Library | None
    cache: ConditionalsCache
    pool: ExtractionPool
    keys: KeyStore
    metrics: Metrics
    ready: bool = False
    io: ThreadPoolExecutor = field(default_factory=io_executor)
    revalidation: RevalidationIndex = field(default_factory=RevalidationIndex)
    lookups: LookupMemo = field(default_factory=LookupMemo)

    @property
    def library(self) -> Library:
        """The library being served (opened by the app's lifespan unless the app was given one)."""
        if self._library is None:
            from .errors import ApiError

            raise ApiError(503, "not_ready", "the server is starting: the library is not open yet",
                           headers={"Retry-After": "1"})
        return self._library

    def open_library(self) -> Library:
        """Open the library of the settings (in the lifespan), unless one was given."""
        if self._library is None:
            s = self.settings
            if s.executor == "ray":  # the models live on Ray actors: this process loads none
                from .remote import remote_library

                self._library = remote_library(s)
                return self._library
            # the process's one engine: every variant, request and worker share its models
            self._library = Library(s.library, engine=shared_engine(s.weights, device=s.device, threads=s.threads),
                                    blobs=s.blobs)
        return self._library

    def generation(self) -> Generation | None:
        """The catalogue's current generation, or ``None`` while the library is not open or cannot say (the
        route then answers, with the right error)."""
        if self._library is None:
            return None
        try:
            return self._library.generation()
        except VoicebankError:
            return None

    async def run_io(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in an I/O thread (reading the store, loading and serialising voice files)."""
        return await asyncio.get_running_loop().run_in_executor(self.io, functools.partial(fn, *args))

    @property
    def shared(self) -> bool:
        """Whether the library is a shared one (PostgreSQL and an object store), not a directory."""
        return isinstance(self.library.store, SharedVoiceStore)

    def writable(self) -> bool:
        """Whether the library directory accepts new files now; for a shared library, whether its database
        answers (what the process's generation watch last saw: no query, so a load balancer may poll it)."""
        if self.shared:
            try:
                self.library.generation()
            except VoicebankError:
                return False
            return True
        path = self.library.path
        if not os.access(path, os.W_OK):
            return False
        try:
            with tempfile.TemporaryFile(dir=path):
                return True
        except OSError:
            return False
