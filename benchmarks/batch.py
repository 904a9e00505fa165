"""Batch extraction throughput: the local and Ray executors of ``voicebank.batch`` against one process.

For embedding mode (speaker embedding + x-vector) and conditionals mode (the full voice file), on 4 s clips of
real speech: clips/s and real-time factor (seconds of audio per second) of

* one process, no batch machinery: a fresh Python process that imports voicebank, loads the models and runs
  ``reference`` + ``embeddings_of`` per clip (embedding) or ``extract_many`` (conditionals), timed from its
  start to its exit: the baseline, the job a user would otherwise script.  Its steady rate (models loaded, no
  start-up) is reported too, and the scaling table uses it;
* the local executor with 1 and 2 worker processes;
* the Ray executor (a local Ray cluster on this machine) with 1 and 2 actors.

Every executor run writes a fresh Parquet dataset and its time includes starting the workers and loading their
models (not the driver's planning), as the baseline's includes its own start.  Each run is made ``--repeat``
times (default 2, alternating) and the fastest is kept, so that a shared machine's bursts of load hit every
configuration alike.  Each worker uses ``--threads`` torch threads (default 1: on a shared 2-core machine, two
spinning OpenMP threads per process are many times slower).  Then a scaling table on paper for 10^6 clips
from the measured steady rate.

    python benchmarks/batch.py [--quick] [--embedding-clips 200] [--conditionals-clips 24] [--threads 1]
                               [--repeat 2]
"""

from __future__ import annotations

import os
import shutil
import sys
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


BASELINE = r"""
import sys, time
weights, mode, listing = sys.argv[1:4]
import torch
torch.set_num_threads(int(sys.argv[4]))
from voicebank.engine import Extractor
paths = open(listing).read().splitlines()
ex = Extractor.from_local(weights).load()
start = time.perf_counter()
if mode == "embedding":
    for p in paths:
        ex.embeddings_of(ex.reference(p))
else:
    ex.extract_many(paths)
print(time.perf_counter() - start)
"""


def _baseline(weights: Path, paths: list[str], mode: str, threads: int, listing: Path) -> tuple[float, float]:
    """``(whole process s, steady s)``: a fresh process doing the job without the batch machinery, from its
    start to its exit, and the part of it after the models were loaded."""
    listing.write_text("\n".join(paths))
    env = C.child_env(threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(C.REPO / "src"), env.get("PYTHONPATH", "")) if p)
    run = C.run_child([sys.executable, "-c", BASELINE, str(weights), mode, str(listing), str(threads)], env=env,
                      timeout=3600)
    if run.returncode != 0:
        raise SystemExit(f"the one-process baseline failed:\n{run.stderr[-3000:]}")
    return run.wall_s, float(run.stdout.strip().splitlines()[-1])


def _run_executor(weights: Path, paths: list[str], mode: str, executor: str, workers: int, threads: int,
                  out: Path, model_batch: int | None = None) -> float:
    from voicebank.batch import TransformConfig
    from voicebank.batch.runner import execute, plan

    shutil.rmtree(out, ignore_errors=True)
    config = TransformConfig(weights=str(weights), mode=mode, model_batch=model_batch)  # type: ignore[arg-type]
    job = plan(paths, out, config)
    summary = execute(job, executor=executor, workers=workers, batch_size=8,  # type: ignore[arg-type]
                      threads_per_worker=threads)
    if summary.done != len(paths):
        raise SystemExit(f"{executor} x{workers}: {summary.done} of {len(paths)} clips done ({summary.failures})")
    return summary.seconds


def _name(executor: str, workers: int, model_batch: int | None) -> str:
    name = f"{executor}, {workers} worker{'s' if workers > 1 else ''}"
    return name + (f", --model-batch {model_batch}" if model_batch else "")


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--embedding-clips", type=int, help="clips in embedding mode (default 200; --quick: 40)")
    p.add_argument("--conditionals-clips", type=int, help="clips in conditionals mode (default 24; --quick: 8)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each configuration; the fastest is kept")
    p.set_defaults(threads=1)
    args = p.parse_args(argv)
    ctx = C.setup("batch", args)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the local Ray cluster on 127.0.0.1
    os.environ["VOICEBANK_NO_PROGRESS"] = "1"
    weights, weights_desc = C.weights(ctx)
    n_emb = args.embedding_clips or (40 if ctx.quick else 200)
    n_cond = args.conditionals_clips or (8 if ctx.quick else 24)
    repeat = 1 if ctx.quick else max(1, args.repeat)
    work = ctx.cache / "batch-runs"
    work.mkdir(parents=True, exist_ok=True)

    from voicebank.batch.runner import connect_ray

    connect_ray(num_cpus=os.cpu_count() or 2)
    results: dict[str, Any] = {"environment": C.environment(ctx, weights_desc), "repeat": repeat, "runs": []}
    rows = []
    per_worker: dict[str, float] = {}
    for mode, n in (("embedding", n_emb), ("conditionals", n_cond)):
        # (executor, workers, model batch); conditionals also with 8 clips through the models at once, as
        # extract_many does (equal to extract to float32 rounding instead of bit-identical)
        configs: tuple[tuple[str, int, int | None], ...] = (("local", 1, None), ("ray", 1, None), ("local", 2, None),
                                                            ("ray", 2, None))
        if mode == "conditionals":
            configs += (("local", 1, 8),)
        paths = [str(x) for x in _clips(ctx, n)]
        audio_s = sum(C.duration_s(Path(x)) for x in paths[: min(n, 100)]) * n / min(n, 100)
        times: dict[str, list[float]] = {"one process (baseline)": [], "one process, steady (models loaded)": []}
        for r in range(repeat):
            order = configs if r % 2 == 0 else tuple(reversed(configs))
            whole, steady = _baseline(weights, paths, mode, ctx.threads, work / "baseline-inputs.txt")
            times["one process (baseline)"].append(whole)
            times["one process, steady (models loaded)"].append(steady)
            for executor, workers, model_batch in order:
                name = _name(executor, workers, model_batch)
                seconds = _run_executor(weights, paths, mode, executor, workers, ctx.threads,
                                  work / f"{mode}-{executor}{workers}", model_batch)
                times.setdefault(name, []).append(seconds)
        best = {name: min(ts) for name, ts in times.items()}
        base = best["one process (baseline)"]
        per_worker[mode] = n / best["one process, steady (models loaded)"]
        for name in ["one process (baseline)", "one process, steady (models loaded)",
                     *(_name(*c) for c in configs)]:
            seconds = best[name]
            rel = ""
            if name.startswith("ray"):
                local = best[name.replace("ray", "local", 1)]
                rel = f"Ray overhead {100 * (seconds / local - 1):+.0f} % vs local"
            elif name.startswith("local"):
                rel = f"{100 * (seconds / base - 1):+.0f} % time vs baseline"
            rows.append([mode, n, name, C.fmt(n / seconds, 2), C.fmt(audio_s / seconds, 1, "x"), C.fmt(seconds, 1),
                         rel])
            results["runs"].append({"mode": mode, "clips": n, "run": name, "seconds": seconds, "all_s": times[name],
                                    "clips_per_s": n / seconds, "rtf": audio_s / seconds})
    C.print_table(f"Batch extraction, {C.BATCH_CLIP_SECONDS} s clips, {ctx.threads} torch thread(s) per worker, "
                  f"fastest of {repeat} ({C.describe_environment(results['environment'])})",
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
