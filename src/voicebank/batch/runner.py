"""Running a batch job: plan (what is left to do), then execute on the ``local`` or the ``ray`` executor.

Whatever the executor, the driver is the dataset's one writer: workers (processes here, Ray actors there)
return result rows, and the driver appends them to Parquet part files, each written whole or not at all.
Every row is keyed by (path, sha256, weights fingerprint, mode, variant): the plan skips inputs whose keys
are all in the output already, and the writer drops any row whose key it has already written (a batch that
Ray ran twice after an actor died), so however the job is interrupted and re-run, each input appears exactly
once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..cpus import usable_cpus
from ..errors import MissingDependencyError, VoicebankError
from ..options import Limits, check_numbers
from ..progress import Progress
from .dataset import (
    KEY_COLUMNS,
    BatchError,
    OutputLock,
    clean_temp_files,
    done_keys,
    require_pyarrow,
    rows_to_table,
    write_part,
)
from .inputs import resolve_inputs
from .transform import BatchTransform, InputRow, TransformConfig, _file_sha256, weights_fingerprints

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

Executor = Literal["local", "ray"]
"""Where a batch job's workers run: processes on this machine, or Ray actors."""
EXECUTORS: tuple[Executor, ...] = ("local", "ray")

DEFAULT_ROWS_PER_FILE = 1024
FLUSH_SECONDS = 30.0
"""A part file is written at least this often while results arrive, so an interrupted job loses little."""


@dataclass
class Plan:
    """What a job will do: the inputs left, in the order they will be submitted, and what was skipped."""

    out_dir: Path
    config: TransformConfig
    pending: list[str]
    skipped: int
    fingerprints: dict[str, str]
    done: set[tuple[Any, ...]]
    """Keys already in the output."""


@dataclass
class Summary:
    """The outcome of :func:`execute`: counts are of rows (one per input and variant)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    duplicates_dropped: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0
    parts: list[Path] = field(default_factory=list)
    failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """``error_type -> [(path, message), ...]``: the failures grouped by reason."""

    @property
    def clips_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio processed per second of wall time."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0


def plan(inputs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
         config: TransformConfig) -> Plan:
    """Resolve ``inputs`` and leave out those already in ``out_dir`` with this config's keys.

    Loads the models once in this process to learn the weights fingerprints (which also checks the weights
    before any worker starts).  Only inputs whose path is already in the output are hashed here.
    """
    require_pyarrow()
    paths = resolve_inputs(inputs)
    fingerprints = weights_fingerprints(config)
    done = done_keys(out_dir)
    seen_paths = {k[0] for k in done}
    pending: list[str] = []
    skipped = 0
    for p in paths:
        if p in seen_paths:
            sha = _file_sha256(InputRow(p))
            if all((p, sha, fingerprints[v], config.mode, v) in done for v in config.variants):
                skipped += 1
                continue
        pending.append(p)
    if config.device.split(":")[0] != "cpu":
        # similar lengths in the same batches keep an accelerator busy (file size stands in for duration)
        pending.sort(key=lambda p: os.path.getsize(p) if os.path.isfile(p) else 0)
    return Plan(Path(out_dir), config, pending, skipped, fingerprints, done)


class PartWriter:
    """Appends result rows to a dataset folder as part files, dropping rows whose key it has seen."""

    def __init__(self, out_dir: Path, done: set[tuple[Any, ...]], summary: Summary, *,
                 rows_per_file: int = DEFAULT_ROWS_PER_FILE, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.out_dir = out_dir
        self.seen = set(done)
        self.summary = summary
        self.rows_per_file = max(1, rows_per_file)
        self.flush_seconds = flush_seconds
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._last_flush = time.monotonic()

    def add(self, table: pa.Table) -> int:
        """Take a table of result rows; returns how many inputs it finished (for progress)."""
        pa = require_pyarrow()
        import pyarrow.compute as pc

        keys = list(zip(*(table.column(c).to_pylist() for c in KEY_COLUMNS), strict=True))
        keep = []
        for i, key in enumerate(keys):
            if key in self.seen:
                self.summary.duplicates_dropped += 1
                continue
            self.seen.add(key)
            keep.append(i)
        if len(keep) < len(keys):
            log.info("dropped %d row(s) already written (a retried batch)", len(keys) - len(keep))
            table = table.take(pa.array(keep, type=pa.int64()))
        if table.num_rows:
            errors = table.column("error").to_pylist()
            types = table.column("error_type").to_pylist()
            paths = table.column("path").to_pylist()
            for path, etype, msg in zip(paths, types, errors, strict=True):
                if msg is None:
                    self.summary.done += 1
                else:
                    self.summary.failed += 1
                    self.summary.failures.setdefault(etype or "Error", []).append((path, msg))
            self.summary.audio_seconds += float(pc.sum(table.column("duration")).as_py() or 0.0)
            self._buffer.append(table)
            self._buffered += table.num_rows
        if self._buffered >= self.rows_per_file or (
                self._buffered and time.monotonic() - self._last_flush >= self.flush_seconds):
            self.flush()
        return len(keep)

    def flush(self) -> None:
        """Write what is buffered as one part file."""
        if not self._buffered:
            return
        pa = require_pyarrow()
        table = pa.concat_tables(self._buffer)
        self.summary.parts.append(write_part(self.out_dir, table))
        self._buffer, self._buffered, self._last_flush = [], 0, time.monotonic()


RUN_LIMITS: Limits = {
    "workers": (1, 1024, True),
    "batch_size": (1, 100_000, True),
    "gpus_per_worker": (0, 64, False),
    "threads_per_worker": (1, 1024, True),
    "rows_per_file": (1, 100_000_000, True),
}
""":func:`execute`'s numeric options: (lowest, highest, whole number); the CLI's ``--batch-size`` is
``batch_size``, and so on."""


def execute(job: Plan, *, executor: Executor = "local", workers: int = 1, batch_size: int = 16,
            ray_address: str | None = None, gpus_per_worker: float = 0.0, threads_per_worker: int | None = None,
            rows_per_file: int = DEFAULT_ROWS_PER_FILE, progress: Progress | None = None) -> Summary:
    """Run a planned job; results are in ``job.out_dir`` when it returns.

    ``workers``: processes (local) or actors (ray); ``batch_size``: input rows per task; ``threads_per_worker``:
    torch threads of each worker (default: the CPUs this process may use, :func:`~voicebank.cpus.usable_cpus`,
    shared out between the local workers; Ray's ``OMP_NUM_THREADS`` for actors).
    """
    if executor not in EXECUTORS:
        raise BatchError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    check_numbers(RUN_LIMITS, {"workers": workers, "batch_size": batch_size, "gpus_per_worker": gpus_per_worker,
                               "threads_per_worker": threads_per_worker, "rows_per_file": rows_per_file})
    summary = Summary(skipped=job.skipped * len(job.config.variants))
    start = time.perf_counter()
    with OutputLock(job.out_dir):
        clean_temp_files(job.out_dir)
        writer = PartWriter(job.out_dir, job.done, summary, rows_per_file=rows_per_file)
        if job.pending:
            if executor == "local":
                _run_local(job, writer, workers=workers, batch_size=batch_size, threads=threads_per_worker,
                           progress=progress)
            else:
                _run_ray(job, writer, workers=workers, batch_size=batch_size, address=ray_address,
                         gpus_per_worker=gpus_per_worker, threads=threads_per_worker, progress=progress)
        writer.flush()
    summary.seconds = time.perf_counter() - start
    return summary


def run(inputs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str], config: TransformConfig,
        **options: Any) -> Summary:
    """:func:`plan` then :func:`execute` (``options`` go to :func:`execute`)."""
    return execute(plan(inputs, out_dir, config), **options)


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _advance(progress: Progress | None, table: pa.Table, variants: int) -> None:
    if progress is not None:
        progress(max(1, table.num_rows // max(1, variants)) if table.num_rows else 0)


# --- local executor ------------------------------------------------------------------------------------

_WORKER: BatchTransform | None = None


def _watch_parent(parent: int) -> None:
    """End this worker when the driver is gone (killed), instead of lingering."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(config: TransformConfig, threads: int, parent: int) -> None:
    global _WORKER
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="voicebank-parent-watch").start()
    _WORKER = BatchTransform(config if config.threads else _with_threads(config, threads)).load()


def _with_threads(config: TransformConfig, threads: int) -> TransformConfig:
    from dataclasses import replace

    return replace(config, threads=threads)


def _work(paths: list[str]) -> bytes:
    """One task of a local worker: the result rows of ``paths`` as Arrow IPC bytes (cheap to send back)."""
    assert _WORKER is not None, "worker not initialised"
    pa = require_pyarrow()
    table = rows_to_table(_WORKER.process([InputRow(p) for p in paths]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _from_ipc(data: bytes) -> pa.Table:
    pa = require_pyarrow()
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


MAX_POOL_RESTARTS = 3


def local_worker_threads(threads: int | None, workers: int) -> int:
    """Torch threads of each local worker: ``threads``, else the CPUs this process may use
    (:func:`~voicebank.cpus.usable_cpus`: affinity and cgroup quota, not the machine's core count) shared out
    between the ``workers``, at least 1."""
    return threads or max(1, usable_cpus() // max(1, workers))


def _run_local(job: Plan, writer: PartWriter, *, workers: int, batch_size: int, threads: int | None,
               progress: Progress | None) -> None:
    """Worker processes on this machine (spawned, each with its models), ``2 * workers`` tasks in flight.

    If a worker process dies (killed, out of memory) the pool is rebuilt and the tasks it had are sent
    again, up to :data:`MAX_POOL_RESTARTS` times; rows it had already returned are not repeated.
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    tasks = _chunks(job.pending, batch_size)
    workers = min(workers, len(tasks))
    per_worker = local_worker_threads(threads, workers)
    queue = list(reversed(tasks))  # pop() from the end = input order
    restarts = 0
    ctx = mp.get_context("spawn")  # no fork of a process that holds torch's thread pools
    while queue:
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(job.config, per_worker, os.getpid()))
        in_flight: dict[Future[bytes], list[str]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < 2 * workers:
                    chunk = queue.pop()
                    in_flight[pool.submit(_work, chunk)] = chunk
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    chunk = in_flight.pop(fut)
                    try:
                        table = _from_ipc(fut.result())
                    except BrokenProcessPool:
                        queue.append(chunk)
                        raise
                    writer.add(table)
                    _advance(progress, table, len(job.config.variants))
        except BrokenProcessPool as e:
            queue.extend(in_flight.values())
            restarts += 1
            log.warning("a local worker died (%s); restarting the pool (%d of %d)", e, restarts, MAX_POOL_RESTARTS)
            if restarts > MAX_POOL_RESTARTS:
                raise BatchError(f"local workers keep dying ({restarts} times); last: {e}") from e
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# --- ray executor --------------------------------------------------------------------------------------


def _require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingDependencyError("the ray executor needs Ray Data: pip install 'voicebank[ray]'") from e
    return ray


def _package_root() -> str:
    """The folder this voicebank is imported from, so Ray workers on this machine run the same code."""
    return str(Path(__file__).resolve().parents[2])  # .../<root>/voicebank/batch/runner.py


def connect_ray(address: str | None = None, *, num_cpus: int | None = None) -> Any:
    """Connect to a Ray cluster (``address``: ``auto`` or ``HOST:PORT``), or start a local one.

    A local cluster gets this machine's cores (``num_cpus`` to override) and no dashboard.  Workers get this
    voicebank on their ``PYTHONPATH`` (harmless on machines where that folder does not exist): on an existing
    cluster through the job's runtime environment; a local cluster's processes inherit it from this process's
    environment as they start, which lets the actors start in the workers Ray keeps ready (a runtime
    environment would make Ray start new ones for them: about 0.7 s more per actor on 2 cores).
    """
    ray = _require_ray()
    if ray.is_initialized():
        return ray
    root = _package_root()
    from ..settings import Settings, temporary_environment

    path = os.pathsep.join(p for p in (root, Settings.from_env().pythonpath) if p)
    if address:
        ray.init(address=address, runtime_env={"env_vars": {"PYTHONPATH": path}}, logging_level=logging.WARNING,
                 log_to_driver=False)
        return ray
    with temporary_environment(PYTHONPATH=path):
        ray.init(num_cpus=num_cpus or usable_cpus(), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    return ray


def actor_cpus(total_cpus: float, workers: int) -> float:
    """CPUs to reserve per actor: one each when they fit with room to spare, else a fraction.

    An actor pool that reserves every core leaves none for Ray Data's own tasks and the job hangs, so the
    pool takes at most ``total_cpus - 0.5``.
    """
    return max(0.1, min(1.0, (total_cpus - 0.5) / workers))


def _run_ray(job: Plan, writer: PartWriter, *, workers: int, batch_size: int, address: str | None,
             gpus_per_worker: float, threads: int | None, progress: Progress | None) -> None:
    """Ray Data: ``from_items`` -> ``map_batches`` over a pool of :class:`BatchTransform` actors -> this driver."""
    ray = connect_ray(address)
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    config = job.config if threads is None or job.config.threads else _with_threads(job.config, threads)
    total = float(ray.cluster_resources().get("CPU", 1.0))
    remote: dict[str, Any] = {"num_cpus": actor_cpus(total, workers)}
    if gpus_per_worker > 0:
        remote["num_gpus"] = gpus_per_worker
    n_blocks = max(1, math.ceil(len(job.pending) / batch_size))
    ds = ray.data.from_items([{"path": p} for p in job.pending], override_num_blocks=n_blocks)
    ds = ds.map_batches(BatchTransform, fn_constructor_kwargs={"config": config}, batch_size=batch_size,
                        batch_format="pyarrow", compute=ActorPoolStrategy(size=workers), **remote)
    log.info("ray: %d inputs in %d blocks over %d actor(s), %s CPU(s) each", len(job.pending), n_blocks, workers,
             remote["num_cpus"])
    try:
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            writer.add(table)
            _advance(progress, table, len(job.config.variants))
    except ray.exceptions.RayError as e:
        # what a worker raised on purpose (e.g. no weights at that path on a cluster node) comes back as itself
        cause = _voicebank_cause(e)
        if cause is not None:
            raise cause from e
        raise BatchError(f"the Ray job failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


def _voicebank_cause(error: BaseException) -> VoicebankError | None:
    """The :class:`~voicebank.errors.VoicebankError` a Ray worker raised, rebuilt in the driver.

    Ray Data hands back a ``RayTaskError(UserCodeException)`` whose ``__cause__`` did not survive pickling, but
    whose text ends with the worker's traceback; its last ``voicebank.errors.<Class>: message`` line names it.
    """
    import re

    from .. import errors

    todo: list[BaseException | None] = [error]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, VoicebankError):
            return e
        todo.extend([e.__cause__, e.__context__, getattr(e, "cause", None)])
    found = re.findall(r"^(?:voicebank\.errors\.)?(\w+): (.+)$", str(error), flags=re.MULTILINE)
    for name, message in reversed(found):
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, VoicebankError):
            try:
                return cls(message)
            except TypeError:  # a subclass with other required arguments: report it as its base
                return VoicebankError(f"{name}: {message}")
    return None
