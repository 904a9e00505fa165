"""Batch extraction throughput: the local and Ray engines of ``voicebank.batch`` against one process.

For embedding mode (speaker embedding + x-vector) and conditionals mode (the full voice file), on 4 s clips of
real speech: clips/s and real-time factor (seconds of audio per second) of

* one process, no batch machinery: ``reference`` + ``embeddings_of`` per clip (embedding), ``extract_many``
  (conditionals): the baseline;
* the local engine with 1 and 2 worker processes;
* the Ray engine (a local Ray cluster on this machine) with 1 and 2 actors.

Every run writes a fresh Parquet dataset and its time includes starting the workers and loading their models
(not the driver's one-off weights check): a fixed cost of a few seconds that a corpus-scale job
amortises.  Each worker uses ``--threads`` torch threads (default 1: on a
shared 2-core machine, two spinning OpenMP threads per process are many times slower).  Then a scaling table
on paper for 10^6 clips from the measured per-worker rate.

    python benchmarks/batch.py [--quick] [--embedding-clips 200] [--conditionals-clips 24] [--threads 1]
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import _common as C


def _clips(ctx: C.Context, n: int) -> list[Path]:
    """``n`` clips of 4 s: the 100 distinct LibriSpeech windows, repeated under other names beyond 100."""
    base = C.batch_clips(ctx, min(n, 100))
    if n <= len(base):
        return base[:n]
    out_dir = ctx.cache / "clips" / f"batch_{C.BATCH_CLIP_SECONDS}s_x{n}"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = out_dir / f"clip_{i:04d}.wav"
        if not p.is_file():
            shutil.copyfile(base[i % len(base)], p)
        paths.append(p)
    return paths


def _baseline(weights: Path, paths: list[str], mode: str) -> float:
    """Seconds for one process to do the job without the batch machinery (models loaded first, untimed)."""
    from voicebank.engine import Extractor

    ex = Extractor.from_local(weights).load()
    start = time.perf_counter()
    if mode == "embedding":
        for p in paths:
            ex.embeddings_of(ex.reference(p))
    else:
        ex.extract_many(paths)
    return time.perf_counter() - start


def _engine(weights: Path, paths: list[str], mode: str, engine: str, workers: int, threads: int,
            out: Path) -> float:
    from voicebank.batch import TransformConfig
    from voicebank.batch.runner import execute, plan

    shutil.rmtree(out, ignore_errors=True)
    job = plan(paths, out, TransformConfig(weights=str(weights), mode=mode))  # type: ignore[arg-type]
    summary = execute(job, engine=engine, workers=workers, batch_size=8,  # type: ignore[arg-type]
                      threads_per_worker=threads)
    if summary.done != len(paths):
        raise SystemExit(f"{engine} x{workers}: {summary.done} of {len(paths)} clips done ({summary.failures})")
    return summary.seconds


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--embedding-clips", type=int, help="clips in embedding mode (default 200; --quick: 40)")
    p.add_argument("--conditionals-clips", type=int, help="clips in conditionals mode (default 24; --quick: 8)")
    p.set_defaults(threads=1)
    args = p.parse_args(argv)
    ctx = C.setup("batch", args)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the local Ray cluster on 127.0.0.1
    os.environ["VOICEBANK_NO_PROGRESS"] = "1"
    weights, weights_desc = C.weights(ctx)
    n_emb = args.embedding_clips or (40 if ctx.quick else 200)
    n_cond = args.conditionals_clips or (8 if ctx.quick else 24)
    work = ctx.cache / "batch-runs"

    from voicebank.batch.runner import connect_ray

    connect_ray(num_cpus=os.cpu_count() or 2)
    results: dict[str, Any] = {"environment": C.environment(ctx, weights_desc), "runs": []}
    rows = []
    per_worker: dict[str, float] = {}
    for mode, n in (("embedding", n_emb), ("conditionals", n_cond)):
        paths = [str(x) for x in _clips(ctx, n)]
        audio_s = sum(C.duration_s(Path(x)) for x in paths[: min(n, 100)]) * n / min(n, 100)
        runs: list[tuple[str, float]] = [("one process (baseline)", _baseline(weights, paths, mode))]
        for engine, workers in (("local", 1), ("ray", 1), ("local", 2), ("ray", 2)):
            seconds = _engine(weights, paths, mode, engine, workers, ctx.threads, work / f"{mode}-{engine}{workers}")
            runs.append((f"{engine}, {workers} worker{'s' if workers > 1 else ''}", seconds))
        base = runs[0][1]
        by_name = dict(runs)
        per_worker[mode] = n / base  # steady state: models loaded, no start-up to amortise
        for name, seconds in runs:
            rel = ""
            if name.startswith("ray"):
                local = by_name[name.replace("ray", "local")]
                rel = f"Ray overhead {100 * (seconds / local - 1):+.0f} % vs local"
            elif name != runs[0][0]:
                rel = f"{100 * (seconds / base - 1):+.0f} % time vs baseline"
            rows.append([mode, n, name, C.fmt(n / seconds, 2), C.fmt(audio_s / seconds, 1, "x"), C.fmt(seconds, 1),
                         rel])
            results["runs"].append({"mode": mode, "clips": n, "run": name, "seconds": seconds,
                                    "clips_per_s": n / seconds, "rtf": audio_s / seconds})
    C.print_table(f"Batch extraction, {C.BATCH_CLIP_SECONDS} s clips, {ctx.threads} torch thread(s) per worker "
                  f"({C.describe_environment(results['environment'])})",
                  ["mode", "clips", "run", "clips/s", "real time", "seconds", "vs"], rows)

    # --- on paper: 10^6 clips of 4 s, from the measured rate of one 1-thread local worker ----------------
    paper = []
    for mode in ("embedding", "conditionals"):
        rate = per_worker[mode]
        for machines, cores in ((1, 2), (1, 16), (10, 16), (100, 16)):
            workers = machines * cores
            hours = 1e6 / (rate * workers) / 3600
            paper.append([mode, f"{machines} x {cores} cores", workers, C.fmt(rate * workers, 0), C.fmt(hours, 2)])
    C.print_table(f"On paper: hours for 10^6 clips of {C.BATCH_CLIP_SECONDS} s (one 1-thread worker per core at "
                  "the measured steady rate of one process, linear scaling)",
                  ["mode", "machines", "workers", "clips/s", "hours"], paper)
    results["paper"] = paper
    results["per_worker_clips_per_s"] = per_worker
    C.write_json(ctx, results)
    import ray

    ray.shutdown()


if __name__ == "__main__":
    main()
