"""Shared helpers of the benchmark scripts: options, checkpoints, clips, timing, RSS, tables and JSON.

Everything the benchmarks generate lives in a cache directory outside git (``--cache``, default
``$VOICEBANK_BENCH_CACHE`` or ``/tmp/voicebank-bench``):

* ``weights-full/``: random weights of the real shapes (a complete Chatterbox checkpoint directory),
  built once with the upstream Python (``_upstream_worker.py build-weights``, ~35 s, 3.2 GB); the tensors
  that conditioning uses are the golden ones of ``tests/golden_weights.py``;
* ``weights-golden/``: the golden tensors alone (``ve.safetensors`` and the conditioning part of
  ``s3gen.safetensors``), used when no upstream Python is given and ``weights-full/`` does not exist;
* ``clips/``: 3 s, 10 s and 22 s clips and 100 clips of 4 s, cut from the concatenated LibriSpeech clips of
  ``tests/data/realspeech/librispeech`` (16 kHz, 16-bit WAV).

The upstream side runs in its own Python (``--upstream-python`` or ``$VOICEBANK_UPSTREAM_PYTHON``; build one
with ``benchmarks/upstream_env.sh DIR``) through ``_upstream_worker.py``; without one the scripts measure
voicebank alone and say so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
WORKER = BENCH_DIR / "_upstream_worker.py"
REALSPEECH = REPO / "tests" / "data" / "realspeech"
LIBRISPEECH = REALSPEECH / "librispeech"
ENV_CACHE = "VOICEBANK_BENCH_CACHE"
ENV_UPSTREAM = "VOICEBANK_UPSTREAM_PYTHON"
DEFAULT_CACHE = "/tmp/voicebank-bench"
CLIP_SECONDS = (3, 10, 22)
BATCH_CLIP_SECONDS = 4
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
T = TypeVar("T")


# --- options -------------------------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer repetitions and clips (a smoke run)")
    p.add_argument("--json", metavar="OUT", type=Path,
                   help="where to write the results as JSON (default: benchmarks/results/<name>.json)")
    p.add_argument("--upstream-python", metavar="PATH", default=os.environ.get(ENV_UPSTREAM) or None,
                   help=f"Python of an upstream chatterbox-tts 0.1.7 environment (default: ${ENV_UPSTREAM}); "
                        "without it, voicebank is measured alone")
    p.add_argument("--cache", metavar="DIR", type=Path, default=Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE),
                   help=f"where weights and clips are generated (default: ${ENV_CACHE} or {DEFAULT_CACHE})")
    p.add_argument("--weights", metavar="DIR", type=Path,
                   help="a Chatterbox checkpoint directory to use instead of the generated random weights")
    p.add_argument("--threads", type=int, default=2, help="torch threads on both sides (default: 2)")
    return p


@dataclass
class Context:
    """Parsed options plus what they resolve to."""

    name: str
    args: argparse.Namespace
    cache: Path
    upstream: str | None
    threads: int
    quick: bool

    @property
    def has_upstream(self) -> bool:
        return self.upstream is not None


def setup(name: str, args: argparse.Namespace) -> Context:
    """Resolve the options; set torch's thread count in this process."""
    cache = args.cache.expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    upstream = args.upstream_python
    if upstream is not None and not Path(upstream).is_file():
        raise SystemExit(f"--upstream-python {upstream}: no such file")
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("voicebank").setLevel(logging.ERROR)  # per-clip warnings (e.g. "tokens cut") are noise here
    return Context(name=name, args=args, cache=cache, upstream=upstream, threads=args.threads, quick=args.quick)


def child_env(threads: int) -> dict[str, str]:
    """Environment of child processes: the same thread count on both sides, no progress bars."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), VOICEBANK_NO_PROGRESS="1",
               TQDM_DISABLE="1", TOKENIZERS_PARALLELISM="false")
    return env


# --- weights and clips ---------------------------------------------------------------------------------


def weights(ctx: Context) -> tuple[Path, str]:
    """The checkpoint directory both sides load, and a description of it.

    With an upstream Python the full-size random checkpoint is built on first use.  Without one, an
    existing full-size checkpoint is used, else the golden conditioning tensors alone.
    """
    if ctx.args.weights is not None:
        return ctx.args.weights.expanduser().resolve(), f"user checkpoint {ctx.args.weights}"
    full = ctx.cache / "weights-full"
    if not (full / "COMPLETE").is_file() and ctx.upstream is not None:
        print(f"building random weights of the real shapes in {full} (once; ~35 s, 3.2 GB) ...", flush=True)
        upstream_task(ctx, "build-weights", ["--out", str(full)], timeout=1800)
    if (full / "COMPLETE").is_file():
        return full, "random weights of the real shapes (golden conditioning tensors), full-size checkpoint"
    golden = ctx.cache / "weights-golden"
    if not (golden / "s3gen.safetensors").is_file():
        sys.path.insert(0, str(REPO / "tests"))
        from golden_weights import write_golden_weights

        write_golden_weights(golden)
    return golden, "golden random weights (conditioning tensors only; no upstream checkpoint built)"


def _librispeech_concat():  # -> np.ndarray (n,) float32 @ 16 kHz
    import numpy as np
    import soundfile as sf

    files = sorted(LIBRISPEECH.rglob("*.flac"))
    if not files:
        raise SystemExit(f"no LibriSpeech clips under {LIBRISPEECH}")
    parts = []
    for f in files:
        wav, sr = sf.read(str(f), dtype="float32")
        if sr != 16000:
            raise SystemExit(f"{f}: expected 16 kHz, got {sr}")
        parts.append(wav if wav.ndim == 1 else wav.mean(axis=1))
    return np.concatenate(parts)


def clips(ctx: Context) -> dict[str, Path]:
    """``{"3s": path, "10s": path, "22s": path}``: real speech cut from the concatenated LibriSpeech clips."""
    out_dir = ctx.cache / "clips"
    wanted = {f"{s}s": out_dir / f"speech_{s}s.wav" for s in CLIP_SECONDS}
    if not all(p.is_file() for p in wanted.values()):
        import soundfile as sf

        out_dir.mkdir(parents=True, exist_ok=True)
        audio = _librispeech_concat()
        for s in CLIP_SECONDS:
            sf.write(str(wanted[f"{s}s"]), audio[: s * 16000], 16000, subtype="PCM_16")
    return wanted


def batch_clips(ctx: Context, n: int) -> list[Path]:
    """``n`` distinct clips of 4 s (consecutive windows of the concatenated LibriSpeech clips; at most 100)."""
    out_dir = ctx.cache / "clips" / f"batch_{BATCH_CLIP_SECONDS}s"
    paths = [out_dir / f"clip_{i:03d}.wav" for i in range(n)]
    if not all(p.is_file() for p in paths):
        import soundfile as sf

        out_dir.mkdir(parents=True, exist_ok=True)
        audio = _librispeech_concat()
        step = BATCH_CLIP_SECONDS * 16000
        if n * step > audio.shape[0]:
            raise SystemExit(f"only {audio.shape[0] // step} clips of {BATCH_CLIP_SECONDS} s available")
        for i, p in enumerate(paths):
            sf.write(str(p), audio[i * step: (i + 1) * step], 16000, subtype="PCM_16")
    return paths


def read_manifest(directory: Path) -> list[dict[str, str]]:
    """The rows of ``directory/MANIFEST.tsv``, a clip set's tab-separated manifest (``path``, ``speaker_id``, ...)."""
    import csv

    with (directory / "MANIFEST.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def resemblyzer_weights() -> Path:
    """Resemblyzer's trained voice encoder, ``resemblyzer/pretrained.pt`` (found as the tests find it, without
    importing resemblyzer, which needs webrtcvad); exits when it is not installed."""
    sys.path.insert(0, str(REPO / "tests"))
    from audio_fixtures import resemblyzer_weights as find

    path = find()
    if path is None:
        raise SystemExit("resemblyzer is not installed (pip install resemblyzer), or pass --weights")
    return path


def audio_files(directory: Path) -> list[Path]:
    """Audio files under ``directory``, sorted."""
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def duration_s(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


# --- measuring -----------------------------------------------------------------------------------------


def stats(seconds: Sequence[float]) -> dict[str, float]:
    """Median, min, mean and p95 (nearest rank) of a list of durations in seconds."""
    xs = sorted(seconds)
    p95 = xs[min(len(xs) - 1, max(0, round(0.95 * (len(xs) - 1))))]
    return {"median_s": statistics.median(xs), "min_s": xs[0], "mean_s": statistics.fmean(xs), "p95_s": p95,
            "n": len(xs)}


def time_calls(fn: Callable[[], Any], *, repeat: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _proc_status(field: str, pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of this process (or of process ``pid``) now, in MiB (``VmRSS``)."""
    return _proc_status("VmRSS", "self" if pid is None else pid)


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (``VmHWM``)."""
    return _proc_status("VmHWM")


def time_each(fn: Callable[[int], T], repeat: int, check: Callable[[T], object] = lambda result: None) -> list[float]:
    """Wall-clock seconds of ``fn(0)``, ..., ``fn(repeat - 1)`` after one untimed ``fn(0)``; ``check`` sees every
    result (outside the timing)."""
    check(fn(0))
    out = []
    for k in range(repeat):
        t = time.perf_counter()
        result = fn(k)
        out.append(time.perf_counter() - t)
        check(result)
    return out


def p50_p99_ms(seconds: Sequence[float]) -> tuple[float, float]:
    """Median and p99 (nearest rank) of durations in seconds, in milliseconds."""
    xs = sorted(seconds)
    return statistics.median(xs) * 1e3, xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))] * 1e3


@dataclass
class ChildRun:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_child(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 600,
              cwd: Path | None = None) -> ChildRun:
    """Run ``cmd`` as a new process; its wall time (spawn to exit) and peak RSS (``wait4``'s ``ru_maxrss``)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = t + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(wall, usage.ru_maxrss / 1024.0, proc.returncode, out.read(), err.read())


def upstream_task(ctx: Context, task: str, extra: Sequence[str], *, timeout: float = 900) -> dict[str, Any]:
    """Run one task of ``_upstream_worker.py`` in the upstream Python; its JSON result."""
    assert ctx.upstream is not None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [ctx.upstream, str(WORKER), task, "--json-out", str(out), "--threads", str(ctx.threads), *extra]
        run = run_child(cmd, env=child_env(ctx.threads), timeout=timeout)
        if run.returncode != 0 or not out.is_file():
            raise SystemExit(f"upstream worker '{task}' failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
        result = json.loads(out.read_text())
    result["_wall_s"] = run.wall_s
    result["_peak_rss_mb"] = run.peak_rss_mb
    return result


class UpstreamServer:
    """The upstream worker kept running (``serve``), so its measurements can alternate with voicebank's.

    The machine may be shared: alternating the two sides one measurement at a time exposes both to the same
    background load, which keeps the ratios fair.
    """

    def __init__(self, ctx: Context) -> None:
        assert ctx.upstream is not None
        self._err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [ctx.upstream, str(WORKER), "serve", "--json-out", os.devnull, "--threads", str(ctx.threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, env=child_env(ctx.threads))
        self._read()  # {"ready": true}

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self._err.seek(0)
            raise SystemExit(f"the upstream worker stopped:\n{self._err.read()[-3000:]}")
        reply = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"upstream worker: {reply['error']}")
        return reply

    def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._err.close()

    def __enter__(self) -> UpstreamServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- reporting -----------------------------------------------------------------------------------------


def speedup(upstream: float | None, voicebank: float | None) -> float | None:
    """``upstream / voicebank`` (how many times faster voicebank is), or ``None`` when either is missing."""
    if upstream is None or voicebank is None or voicebank <= 0:
        return None
    return upstream / voicebank


def fmt(x: float | None, digits: int = 1, suffix: str = "") -> str:
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}{suffix}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Print a Markdown table (and return it)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        padded = (c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    text = "\n".join([f"### {title}", "", line(cells[0]),
                      "|" + "|".join("-" * (w + 2) for w in widths) + "|", *[line(r) for r in cells[1:]]])
    print("\n" + text + "\n", flush=True)
    return text


# --- library sizes (scale.py, service_scale.py) ---------------------------------------------------------


def size_options(p: argparse.ArgumentParser, timed: str) -> None:
    """``--sizes``, ``--with-million``, ``--repeat`` (how many ``timed`` per operation and size) and ``--keep``."""
    p.add_argument("--sizes", default="1000,10000,100000", help="library sizes, comma-separated")
    p.add_argument("--with-million", action="store_true", help="also 10^6 voices (minutes, ~2 GB of disk)")
    p.add_argument("--repeat", type=int, default=50, help=f"{timed} per operation and size")
    p.add_argument("--keep", type=Path, help="build the libraries here and keep them (default: a temp dir)")


def library_sizes(args: argparse.Namespace) -> list[int]:
    """The sizes :func:`size_options` asked for, 10^6 last with ``--with-million``."""
    return [int(s) for s in args.sizes.split(",") if s] + ([1_000_000] if args.with_million else [])


def size_headers(sizes: Sequence[int]) -> list[str]:
    """The header of a table with a column per library size and the growth from the first to the last."""
    return ["", *[f"{n:,} voices" for n in sizes], "growth"]


def latency_rows(results: Sequence[dict[str, Any]], ops: Sequence[str]) -> list[list[str]]:
    """A row per operation: ``p50 / p99`` ms at each size (``results[i][op]`` from :func:`p50_p99_ms`) and the
    median's growth from the first size to the last."""
    rows = []
    for op in ops:
        growth = results[-1][op][0] / max(results[0][op][0], 1e-9)
        rows.append([f"{op}, ms (p50 / p99)", *[f"{r[op][0]:.2f} / {r[op][1]:.2f}" for r in results],
                     f"{growth:.1f}x"])
    return rows


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(ctx: Context, weights_desc: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    import voicebank

    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "voicebank": voicebank.__version__,
        "threads": ctx.threads,
        "quick": ctx.quick,
        "upstream_python": ctx.upstream,
    }
    if weights_desc:
        env["weights"] = weights_desc
    return env


def describe_environment(env: dict[str, Any]) -> str:
    up = "upstream side by side" if env.get("upstream_python") else "voicebank ALONE (no upstream Python given)"
    return (f"{env['cpu']}, {env['cpu_count']} cores, {env['threads']} torch threads, torch {env['torch']}, "
            f"load average {env['load_average'][0]:.2f}; {up}"
            + (f"; weights: {env['weights']}" if env.get("weights") else ""))


def write_json(ctx: Context, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``--json`` or ``benchmarks/results/<name>.json``."""
    path = ctx.args.json or (BENCH_DIR / "results" / f"{ctx.name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def no_upstream_note(ctx: Context) -> None:
    if not ctx.has_upstream:
        print(f"note: no upstream Python (--upstream-python / ${ENV_UPSTREAM}): measuring voicebank alone, "
              "no ratios", flush=True)
