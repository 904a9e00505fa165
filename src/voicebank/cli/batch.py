"""The ``voicebank batch`` command (corpus-scale extraction into a Parquet dataset) and ``add --from-dataset``.

``register(app)`` adds ``batch`` to the Typer app.  The heavy parts (torch, pyarrow, Ray) are imported when a
command runs, never when the CLI starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..chatterbox import DEFAULT_EXAGGERATION
from .common import DeviceOpt, ParentsOpt, WeightsOpt, check_device, check_executor, clean, progress

if TYPE_CHECKING:
    from ..batch.runner import Summary
    from ..library import Library

PROGRESS_MIN_ITEMS = 5


def register(app: typer.Typer) -> None:
    """Add ``batch`` to ``app`` (idempotent)."""
    if any(c.name == "batch" for c in app.registered_commands):
        return
    app.command("batch")(batch)


def batch(
    inputs: Annotated[list[str], typer.Argument(help="Audio files, folders (searched recursively), globs "
                                                "('data/**/*.flac') or manifests (.txt, .csv, .parquet with a "
                                                "path column).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset folder: Parquet part files are added "
                                         "there; inputs already in it are skipped.", show_default=False)],
    mode: Annotated[str, typer.Option("--mode", "-m", help="embedding (speaker embedding + x-vector) or "
                                      "conditionals (the full voice file as well).")] = "embedding",
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Chatterbox variant(s), repeatable "
                                                      "(default english).", show_default=False)] = None,
    exaggeration: Annotated[float, typer.Option("--exaggeration", help="Conditionals mode: emotion "
                                                "exaggeration.")] = DEFAULT_EXAGGERATION,
    executor: Annotated[str, typer.Option("--executor", help="local (worker processes on this machine) or ray "
                                        "(Ray Data; pip install 'voicebank\\[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster to join: auto or "
                                                    "HOST:PORT (default: start a local one).",
                                                    show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes (local) or "
                                         "actors (ray).")] = 1,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0.0, help="Ray: GPUs per actor "
                                                   "(with --device cuda; 0.5 puts two actors on a GPU).")] = 0.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Input clips per task.")] = 16,
    model_batch: Annotated[int | None, typer.Option("--model-batch", min=1, help="Clips that go through the "
                                                    "models together (default: 1 on the CPU, where every row is "
                                                    "then bit-identical to extract with the same --threads; 16 on "
                                                    "a GPU). More is faster and equal to extract to float32 "
                                                    "rounding.",
                                                    show_default=False)] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Torch threads of each worker (default: "
                                                "the CPUs this process may use, shared out between the local "
                                                "workers; Ray: the actor's CPUs).", show_default=False)] = None,
    rows_per_file: Annotated[int, typer.Option("--rows-per-file", min=1, help="Rows per Parquet part file "
                                               "(one is also written every 30 s).")] = 1024,
    precision: Annotated[str, typer.Option("--precision", help="exact (float32, as upstream) or bf16.")] = "exact",
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    parents: ParentsOpt = False,
) -> None:
    """Extract embeddings or conditionals of many clips into a Parquet dataset; resumable, exactly once."""
    from ..batch.runner import RUN_LIMITS
    from ..batch.transform import BATCH_MODES, TransformConfig
    from ..options import check_numbers

    check_numbers({**RUN_LIMITS, "threads": RUN_LIMITS["threads_per_worker"]},
                  {"workers": workers, "batch_size": batch_size, "gpus_per_worker": gpus_per_worker,
                   "threads": threads, "rows_per_file": rows_per_file}, prefix="--")

    if mode not in BATCH_MODES:
        raise typer.BadParameter(f"--mode {mode}: choose one of {', '.join(BATCH_MODES)}")
    chosen = check_executor(executor, ray_address, gpus_per_worker, device)
    if not parents:  # the dataset folder itself is created, not a mistyped tree above it
        from ..fileio import missing_parent

        missing_parent(output, "--output", "--parents")
    if executor == "local" or ray_address is None:
        device = check_device(device)  # a remote cluster's devices are checked where the actors run
    try:
        config = TransformConfig(weights=str(weights) if weights is not None else None,
                                 variants=tuple(variant or ["english"]), mode=mode,
                                 device=device, precision=precision, exaggeration=exaggeration,
                                 model_batch=model_batch)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    from ..batch.runner import execute, plan

    if executor == "ray":
        import logging

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset INFO lines would cut the progress bar
    job = plan(inputs, output, config)
    typer.echo(f"{len(job.pending)} clip(s) to do, {job.skipped} already in {clean(output)}", err=True)
    with _progress(len(job.pending)) as advance:
        summary = execute(job, executor=chosen, workers=workers, batch_size=batch_size,
                          ray_address=ray_address, gpus_per_worker=gpus_per_worker, threads_per_worker=threads,
                          rows_per_file=rows_per_file, progress=advance)
    _print_summary(summary, output)


class _Progress:
    """A rich progress bar on stderr with clips/s and ETA (silent for a handful of clips).

    The runner reports clips a batch at a time, several batches in the same instant when workers finish
    together, so rich's own speed (clips over the time between its last samples) reads thousands of clips/s.
    The rate shown is the clips done over the time since the bar started, and the ETA follows from it."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:

        self.total = total
        self.bar: Any = None
        self.task: Any = None
        self.enabled = total > PROGRESS_MIN_ITEMS and _progress_allowed()
        self.clock = clock
        self.start = 0.0
        self.done = 0

    def rate(self) -> float | None:
        """Clips per second since the bar started (``None`` before the first clip)."""
        elapsed = self.clock() - self.start
        return self.done / elapsed if self.done and elapsed > 0 else None

    def fields(self) -> dict[str, str]:
        """The rate and ETA the bar shows."""
        rate = self.rate()
        if rate is None:
            return {"rate": "- clips/s", "eta": "-:--:--"}
        left = max(0, self.total - self.done) / rate
        return {"rate": f"{rate:.1f} clips/s", "eta": f"{int(left // 3600)}:{int(left % 3600 // 60):02d}:"
                                                        f"{int(left % 60):02d}"}

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TextColumn("{task.fields[eta]}"), console=Console(stderr=True), transient=False)
        self.bar.__enter__()
        self.start, self.done = self.clock(), 0
        self.task = self.bar.add_task("batch", total=self.total, **self.fields())

        def advance(n: int) -> None:
            self.done += n
            self.bar.update(self.task, advance=n, **self.fields())

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _progress(total: int) -> _Progress:
    return _Progress(total)


def _print_summary(summary: Summary, output: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:
        console.width = 200
    console.print(f"[bold]{output}[/bold]: {summary.done} done, {summary.skipped} skipped (already there), "
                  f"{summary.failed} failed; {summary.seconds:.1f} s, {summary.clips_per_second:.2f} clips/s, "
                  f"{summary.real_time_factor:.1f}x real time; {len(summary.parts)} part file(s) written")
    if summary.duplicates_dropped:
        console.print(f"{summary.duplicates_dropped} duplicate row(s) from retried tasks dropped")
    if summary.failures:
        table = Table(title="failures by reason", title_justify="left")
        table.add_column("error", no_wrap=True)
        table.add_column("clips", justify="right")
        table.add_column("example", overflow="fold")
        for etype, items in sorted(summary.failures.items(), key=lambda kv: -len(kv[1])):
            table.add_row(etype, str(len(items)), items[0][1])
        console.print(table)


def add_from_dataset(dataset: Path, lib: Library, *, variant: str | None, tags: list[str], consent: str,
                     added_by: str | None, as_json: bool, check_duplicates: bool = True) -> None:
    """``voicebank add --from-dataset DIR``: a ``voicebank batch`` dataset's voices into the library, either mode.

    Each successful row becomes a voice named after its clip's file stem (:func:`voicebank.batch.import_dataset`:
    ``conditionals`` rows as conditionals voices, ``embedding`` rows as embedding voices, no files in between).
    Rows whose name or audio is already in the library, and rows the batch could not compute, are skipped; exit 1
    if any failed.  A progress bar counts the dataset's rows.
    """
    import json

    from ..batch.dataset import open_parts
    from ..batch.into_library import import_dataset
    from ..errors import LibraryError

    total = sum(part.metadata.num_rows for _, part in open_parts(dataset))
    with progress(total, "importing") as advance:
        results = import_dataset(lib, dataset, variant=variant, tags=tags, consent=consent, added_by=added_by,
                                 check_duplicates=check_duplicates, progress=advance)
    counts = {"added": 0, "skipped": 0, "failed": 0}
    for r in results:
        counts[r.status] += 1
    if as_json:
        typer.echo(json.dumps([{"path": r.source, "name": r.name, "status": r.status, "reason": r.reason}
                               for r in results], indent=2))
    for r in results:
        if r.status == "failed":
            typer.echo(f"voicebank: error: {clean(r.source)}: {clean(r.reason)}", err=True)
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()) + f" from {clean(dataset)}", err=True)
    if counts["failed"]:
        raise LibraryError(f"{counts['failed']} voice(s) of {dataset} could not be imported (listed above)")


def _progress_allowed() -> bool:
    from ..settings import Settings

    return Settings.from_env().progress
