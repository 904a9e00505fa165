"""Extraction on a Ray cluster for a process that loads no model: a pool of actors holding the engine.

:class:`PreparePool` starts ``workers`` Ray actors (:class:`PrepareWorker`), each with this voicebank's engine for
the given weights, device and threads, and sends them single jobs: :meth:`PreparePool.prepare` runs
:func:`voicebank.library.ingest.prepare` -- the inspection and extraction of one clip, the same computation a
local :meth:`~voicebank.library.Library.add` runs -- and returns its picklable
:class:`~voicebank.library.ingest.Prepared`, which the caller commits to its library; the other calls are the
engine methods a library needs (:class:`RemoteEngine` offers them as a
:class:`~voicebank.library.computes.Computes`).

Failures: a worker that dies mid-job (its process killed, its node lost) is restarted by Ray
(``max_restarts``) and the job is sent once more; a second loss, a cluster that cannot be reached, or no answer
within :data:`JOB_TIMEOUT_S` raise :class:`~voicebank.errors.ClusterUnavailableError`.  What a worker raises on
purpose (a refused clip, missing weights on its node) comes back as itself.  Nothing is ever half-done: a job
returns a complete result or raises, and storing is the caller's.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..chatterbox import DEFAULT_EXAGGERATION
from ..errors import ClusterUnavailableError

if TYPE_CHECKING:
    from ..audio.clip import Clip
    from ..audio.decode import AudioSource
    from ..engine import Engine
    from ..library.ingest import AddOptions, Prepared
    from ..voice.voice import Voice

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0
"""Longest wait for every worker to start and load its models (a cluster without the resources asked for)."""
JOB_TIMEOUT_S = 600.0
"""Longest wait for one job's answer before the cluster is taken for lost."""
CONNECT_TIMEOUT_S = 5.0
"""Longest wait for the cluster's address to accept a TCP connection (Ray's own connect retries for minutes)."""
MAX_RESTARTS = 8
"""Times Ray restarts a worker whose process died; a pool replaces one that is dead for good."""


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker builds its engine from: plain values, so it pickles to any node."""

    weights: str | None = None
    """Directory with the Chatterbox checkpoints on the workers' nodes (``None``: their ``$VOICEBANK_WEIGHTS``,
    then their Hugging Face cache)."""
    device: str = "cpu"
    threads: int | None = None
    """Torch intra-op threads of a worker (``None``: ``$OMP_NUM_THREADS``, which Ray sets from its CPUs)."""


class PrepareWorker:
    """The body of one Ray actor: an engine, loaded once, and the jobs a :class:`PreparePool` sends it."""

    def __init__(self, config: WorkerConfig) -> None:
        from ..engine import shared_engine

        self.config = config
        self.engine: Engine = shared_engine(config.weights, device=config.device, threads=config.threads)

    def load(self, variants: Sequence[str]) -> dict[str, Any]:
        """Load the models of ``variants`` (embeddings only without torch); who this worker is."""
        from ..models.torch_runtime import torch_installed
        from .transform import worker_id

        self.engine.load(variants, embeddings_only=not torch_installed())
        return {"worker": worker_id(), "pid": os.getpid(),
                "fingerprints": {v: self.engine.weights_fingerprint(v) for v in variants}}

    def prepare(self, clip: Clip, options: AddOptions, name: str) -> Prepared:
        """:func:`voicebank.library.ingest.prepare` of ``clip`` with this worker's engine."""
        from ..library import ingest

        return ingest.prepare(clip, options, self.engine, name=name)

    def embeddings(self, clip: Clip, variant: str) -> tuple[np.ndarray, np.ndarray | None]:
        return self.engine.embeddings(clip, variant)

    def embed(self, sources: Sequence[bytes | Clip], variant: str) -> np.ndarray:
        return self.engine.embed(sources, variant=variant)

    def extract(self, clip: Clip, variant: str, exaggeration: float) -> bytes:
        """The voice file of ``clip`` (bytes: a :class:`~voicebank.voice.Voice` travels as its file)."""
        return self.engine.extract(clip, variant, exaggeration=exaggeration).to_bytes()

    def weights_fingerprint(self, variant: str) -> str:
        return self.engine.weights_fingerprint(variant)

    def pid(self) -> int:
        """This worker's process id (to watch it, or for a test to kill it)."""
        return os.getpid()


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse at once a ``HOST:PORT`` cluster address that accepts no TCP connection (Ray would retry for
    minutes); ``None``, ``auto`` and ``ray://`` addresses are left to Ray."""
    if not address or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterUnavailableError(f"--ray-address {address!r} is not HOST:PORT (or auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ClusterUnavailableError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start it (`ray start --head`) or "
            "pass the address of its head node") from e


def _ray_error(e: BaseException) -> BaseException:
    """What a job that raised on its worker means here: what the worker raised (a
    :class:`~voicebank.errors.VoicebankError` on purpose, anything else a bug), else Ray's error itself."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, Exception) else e


class PreparePool:
    """``workers`` Ray actors holding the engine; jobs go to an idle one (at most one job per actor at a time).

    Callers block in :meth:`call` while their job runs; with more callers than workers, the extra ones wait
    for an actor, so admission control (a bounded queue) is the caller's (the service's extraction pool)."""

    def __init__(self, config: WorkerConfig, *, workers: int = 1, address: str | None = None,
                 gpus_per_worker: float = 0.0, retries: int = 1,
                 worker_class: type[PrepareWorker] = PrepareWorker) -> None:
        self.config = config
        self.workers = int(workers)
        self.address = address
        self.gpus_per_worker = float(gpus_per_worker)
        self.retries = int(retries)
        self.worker_class = worker_class
        self._idle: queue.Queue[int] = queue.Queue()
        self._actors: list[Any] = []
        self._lock = threading.Lock()
        self._ray: Any = None
        self._started_ray = False
        self.info: list[dict[str, Any]] = []

    # --- life -------------------------------------------------------------------------------------------

    def start(self, variants: Sequence[str] = ("english",)) -> PreparePool:
        """Connect to the cluster, start the workers and load their models (every failure one
        :class:`~voicebank.errors.ClusterUnavailableError`, or the workers' own error, e.g. missing weights)."""
        from .runner import connect_ray

        check_reachable(self.address)
        import ray

        already = ray.is_initialized()
        try:
            self._ray = connect_ray(self.address)
        except (ConnectionError, TimeoutError, RuntimeError) as e:
            raise ClusterUnavailableError(f"cannot connect to the Ray cluster at {self.address or 'a new local one'}"
                                          f" ({' '.join(str(e).split()) or type(e).__name__})") from e
        self._started_ray = not already
        self._variants = tuple(variants)
        self._actors = [self._new_actor() for _ in range(self.workers)]
        t0 = time.perf_counter()
        self.info = [self._get(a.load.remote(self._variants), START_TIMEOUT_S, "start its workers")
                     for a in self._actors]
        for i in range(self.workers):
            self._idle.put(i)
        log.info("ray: %d extraction worker(s) ready in %.1f s: %s", self.workers, time.perf_counter() - t0,
                 ", ".join(i["worker"] for i in self.info))
        return self

    def _new_actor(self) -> Any:
        ray = self._ray
        total = float(ray.cluster_resources().get("CPU", 1.0))
        options: dict[str, Any] = {"num_cpus": max(0.1, min(1.0, total / max(1, self.workers))),
                                   "max_restarts": MAX_RESTARTS, "max_task_retries": 0}
        if self.gpus_per_worker > 0:
            options["num_gpus"] = self.gpus_per_worker
        return ray.remote(self.worker_class).options(**options).remote(self.config)

    def close(self) -> None:
        """Stop the workers (and the Ray connection this pool made)."""
        ray = self._ray
        if ray is None:
            return
        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone with its cluster
                log.debug("ray.kill failed", exc_info=True)
        self._actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._ray = None

    def actor(self, index: int) -> Any:
        """The handle of worker ``index`` (for diagnostics and tests)."""
        return self._actors[index]

    # --- jobs -------------------------------------------------------------------------------------------

    def _get(self, ref: Any, timeout: float, what: str) -> Any:
        ray = self._ray
        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError as e:
            try:
                ray.cancel(ref)
            except Exception:  # an actor's task that cannot be cancelled: its answer is dropped
                log.debug("ray.cancel failed", exc_info=True)
            raise ClusterUnavailableError(f"the Ray cluster did not {what} within {timeout:g} s (is it short of "
                                          "CPUs or GPUs for the workers, or lost?); nothing was stored") from e
        except ray.exceptions.RayTaskError as e:
            raise _ray_error(e) from None

    def call(self, method: str, *args: Any) -> Any:
        """``method(*args)`` on an idle worker; a worker lost mid-job is replaced and the job sent again (up
        to :attr:`retries` times), then :class:`~voicebank.errors.ClusterUnavailableError`."""
        if self._ray is None:
            raise ClusterUnavailableError("the Ray extraction workers are stopped")
        ray = self._ray
        attempt = 0
        while True:
            index = self._idle.get()
            try:
                actor = self._actors[index]
                return self._get(getattr(actor, method).remote(*args), JOB_TIMEOUT_S, "answer")
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as e:
                attempt += 1
                try:
                    self._replace(index)
                except Exception as lost:  # the cluster went with the worker
                    raise ClusterUnavailableError(f"the Ray worker running this job was lost ({type(e).__name__}) "
                                                  "and cannot be replaced; nothing was stored, retry later") from lost
                if attempt > self.retries:
                    raise ClusterUnavailableError(
                        f"the Ray worker running this job was lost ({type(e).__name__}, {attempt} attempt(s)); "
                        "nothing was stored, retry later") from e
                log.warning("ray: worker %d lost mid-job (%s); sending the job again", index, type(e).__name__)
            except (ray.exceptions.RayError, ConnectionError) as e:  # the cluster (or a Ray Client link) lost
                raise ClusterUnavailableError(f"the Ray cluster failed ({' '.join(str(e).split())[:200]}); nothing "
                                              "was stored, retry later") from e
            finally:
                self._idle.put(index)

    def _replace(self, index: int) -> None:
        """Worker ``index`` died mid-job: it gets a successor (Ray restarts a worker that dies between jobs, but
        one lost mid-job may be dead for good or restarting, and a retry should not wait to learn which)."""
        ray = self._ray
        with self._lock:
            try:
                ray.kill(self._actors[index], no_restart=True)
            except Exception:  # gone with its node
                log.debug("ray.kill failed", exc_info=True)
            self._actors[index] = self._new_actor()
            self._actors[index].load.remote(self._variants)  # runs before the next job sent to it

    # --- the jobs -----------------------------------------------------------------------------------------

    def prepare(self, clip: Clip, options: AddOptions, name: str) -> Prepared:
        """:func:`voicebank.library.ingest.prepare` on a worker."""
        prepared: Prepared = self.call("prepare", clip, options, name)
        return prepared


def _clip(source: AudioSource | Clip) -> Clip:
    from ..audio.clip import Clip

    return Clip.read(source)


class RemoteEngine:
    """A :class:`~voicebank.library.computes.Computes` whose computing is done by a :class:`PreparePool`: what a
    library in a process without models uses for searches, stored voices' extraction and its cohort."""

    def __init__(self, pool: PreparePool) -> None:
        self.pool = pool
        self._fingerprints: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"RemoteEngine({self.pool.workers} Ray worker(s), {self.pool.config.device})"

    def weights_fingerprint(self, variant: str = "english") -> str:
        fp = self._fingerprints.get(variant)
        if fp is None:
            fp = self._fingerprints[variant] = str(self.pool.call("weights_fingerprint", variant))
        return fp

    def embeddings(self, source: Any, variant: str = "english") -> tuple[np.ndarray, np.ndarray | None]:
        speaker, xvector = self.pool.call("embeddings", _clip(source), variant)
        return speaker, xvector

    def embed(self, sources: Sequence[AudioSource | Clip], *, variant: str = "english") -> np.ndarray:
        items = [s if isinstance(s, bytes) else _clip(s) for s in sources]
        return np.asarray(self.pool.call("embed", items, variant))

    def extract(self, source: Clip, variant: str = "english", *, exaggeration: float = DEFAULT_EXAGGERATION,
                ) -> Voice:
        from ..voice.voice import Voice

        data: bytes = self.pool.call("extract", _clip(source), variant, exaggeration)
        return Voice.from_bytes(data)

