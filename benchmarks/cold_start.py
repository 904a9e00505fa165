"""Cold start: a NEW process that extracts the conditionals of a 10 s clip and saves them.

voicebank: ``voicebank extract CLIP -o OUT.safetensors --weights DIR`` (the console script);
upstream: ``ChatterboxTTS.from_local(DIR, "cpu")`` + ``prepare_conditionals(CLIP)`` + ``conds.save(OUT.pt)``.
Each process is timed from spawn to exit; its peak RSS is the kernel's ``ru_maxrss``.  One untimed run of
each comes first so that both read their checkpoints from the page cache (a warm file cache, a cold
process).

    python benchmarks/cold_start.py [--quick] [--json OUT] [--upstream-python PATH]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import _common as C


def voicebank_command(weights: Path, clip: Path, out: Path) -> list[str]:
    script = Path(sys.executable).parent / "voicebank"
    base = [str(script)] if script.is_file() else [sys.executable, "-m", "voicebank.cli"]
    return [*base, "extract", str(clip), "-o", str(out), "--weights", str(weights)]


def upstream_command(ctx: C.Context, weights: Path, clip: Path, out: Path, json_out: Path) -> list[str]:
    assert ctx.upstream is not None
    return [ctx.upstream, str(C.WORKER), "cold", "--ckpt", str(weights), "--clip", str(clip), "--out", str(out),
            "--json-out", str(json_out), "--threads", str(ctx.threads)]


def measure(cmd: list[str], ctx: C.Context, repeat: int) -> list[C.ChildRun]:
    runs = []
    for i in range(repeat + 1):
        run = C.run_child(cmd, env=C.child_env(ctx.threads), timeout=900)
        if run.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
        if i:  # the first run only warms the page cache
            runs.append(run)
    return runs


IMPORT_TORCH = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"
WARM = r"""
import statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from voicebank.engine import Engine
engine = Engine(sys.argv[1])
times = []
for _ in range(4):
    t = time.perf_counter(); engine.extract(sys.argv[2], "english"); times.append(time.perf_counter() - t)
print(statistics.median(times[1:]))
"""


def floor_parts(ctx: C.Context, weights: Path, clip: Path, repeat: int) -> tuple[float, float]:
    """``(import torch s, warm extraction s)``, medians, in fresh processes of this Python: the issue's floor for a
    cold start is ``import torch + 1.25 x warm extraction``."""
    env = C.child_env(ctx.threads)
    imports = [float(C.run_child([sys.executable, "-c", IMPORT_TORCH], env=env).stdout.strip().splitlines()[-1])
               for _ in range(repeat + 1)][1:]
    warm = C.run_child([sys.executable, "-c", WARM, str(weights), str(clip), str(ctx.threads)], env=env, timeout=900)
    if warm.returncode != 0:
        raise SystemExit(f"warm extraction failed:\n{warm.stderr[-3000:]}")
    return statistics.median(imports), float(warm.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args(argv)
    ctx = C.setup("cold_start", args)
    C.no_upstream_note(ctx)
    weights, weights_desc = C.weights(ctx)
    clip = C.clips(ctx)["10s"]
    repeat = 1 if ctx.quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="vb-cold-"))
    try:
        vb_runs = measure(voicebank_command(weights, clip, tmp / "voice.safetensors"), ctx, repeat)
        up_runs: list[C.ChildRun] = []
        if ctx.has_upstream:
            up_runs = measure(upstream_command(ctx, weights, clip, tmp / "conds.pt", tmp / "up.json"), ctx, repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def summary(runs: list[C.ChildRun]) -> dict | None:
        if not runs:
            return None
        return {"wall": C.stats([r.wall_s for r in runs]),
                "peak_rss_mb_median": statistics.median(r.peak_rss_mb for r in runs),
                "peak_rss_mb_max": max(r.peak_rss_mb for r in runs)}

    vb, up = summary(vb_runs), summary(up_runs)
    assert vb is not None
    torch_s, warm_s = floor_parts(ctx, weights, clip, repeat)
    target = torch_s + 1.25 * warm_s
    env = C.environment(ctx, weights_desc)
    rows = [["voicebank (`voicebank extract`)", C.fmt(vb["wall"]["median_s"], 2), C.fmt(vb["wall"]["min_s"], 2),
             C.fmt(vb["peak_rss_mb_median"], 0), "", ""]]
    result = {"environment": env, "clip": str(clip), "clip_seconds": 10, "repeat": repeat, "voicebank": vb,
              "upstream": up, "import_torch_s": torch_s, "warm_extraction_s": warm_s, "target_s": target,
              "within_target": vb["wall"]["median_s"] <= target}
    rows.append([f"floor: `import torch` {torch_s:.2f} s + 1.25 x warm extraction {warm_s:.2f} s",
                 C.fmt(target, 2), "", "", "", "within" if vb["wall"]["median_s"] <= target else "OVER"])
    if up is not None:
        speed = C.speedup(up["wall"]["median_s"], vb["wall"]["median_s"])
        mem = C.speedup(up["peak_rss_mb_median"], vb["peak_rss_mb_median"])
        rows.append(["upstream (`from_local` + `prepare_conditionals` + `save`)", C.fmt(up["wall"]["median_s"], 2),
                     C.fmt(up["wall"]["min_s"], 2), C.fmt(up["peak_rss_mb_median"], 0), "", ""])
        rows[0][4] = C.fmt(speed, 1, "x")
        rows[0][5] = C.fmt(mem, 1, "x")
        result["speedup"] = speed
        result["rss_ratio"] = mem
        result["targets"] = {"speedup>=8": bool(speed and speed >= 8),
                             "rss<=1/5": bool(mem and mem >= 5)}
    print(C.describe_environment(env))
    C.print_table(f"Cold start: new process, extract + save a 10 s clip (median of {repeat})",
                  ["process", "wall s (median)", "wall s (min)", "peak RSS MiB", "speedup", "less RSS"], rows)
    C.write_json(ctx, result)


if __name__ == "__main__":
    main()
