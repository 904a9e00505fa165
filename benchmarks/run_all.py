"""Run every benchmark, then summarise the issue's targets in one table.

Each benchmark runs as its own process with the same options and writes its JSON next to the summary
(``--json`` names the summary file; default ``benchmarks/results/summary.json``).

    python benchmarks/run_all.py [--quick] [--json OUT] [--upstream-python PATH]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import _common as C

SCRIPTS = ("cold_start", "warm_extraction", "embedding_throughput", "voice_loading", "fast_mode")


def _get(d: dict | None, *keys: str):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summarise(results: dict[str, dict]) -> list[list[str]]:
    """``[target, required, measured, met]`` rows."""
    cold, warm = results.get("cold_start", {}), results.get("warm_extraction", {})
    emb, load = results.get("embedding_throughput", {}), results.get("voice_loading", {})
    rows = []

    def add(target: str, required: str, value: float | None, fmt: str, ok: bool | None) -> None:
        rows.append([target, required, "n/a" if value is None else fmt.format(value),
                     "n/a" if ok is None else ("yes" if ok else "NO")])

    speed = _get(cold, "speedup")
    add("cold start, wall time vs upstream", ">= 8x", speed, "{:.1f}x", None if speed is None else speed >= 8)
    rss = _get(cold, "rss_ratio")
    add("cold start, peak RSS vs upstream", "<= 1/5", rss, "1/{:.1f}", None if rss is None else rss >= 5)
    for key in ("english/10s", "english/3s", "english/22s"):
        s = _get(warm, "speedup_median", key)
        add(f"warm extraction {key} vs upstream", ">= 1.5x", s, "{:.2f}x", None if s is None else s >= 1.5)
        t, floor = _get(warm, "voicebank", "single", key, "median_s"), _get(warm, "gemm_floor", key, "mkl_s")
        f = None if t is None or floor is None else t / floor
        add(f"warm extraction {key} vs the tokenizer's float32 GEMM floor (MKL)", "<= 1.25x", f, "{:.2f}x",
            None if f is None else f <= 1.25)
    ms = _get(load, "voicebank", "load_safetensors", "median_s")
    add("stored voice -> conditionals, median", "<= 2 ms", None if ms is None else 1000 * ms, "{:.2f} ms",
        None if ms is None else ms <= 0.002)
    rt = _get(emb, "voicebank_realtime_factor")
    add("embedding-only throughput", ">= 300x real time", rt, "{:.0f}x", None if rt is None else rt >= 300)
    b = _get(warm, "voicebank", "batch", "english")
    if b:
        add(f"extract_many of {b['n']} clips vs a loop", "> 1x", b["loop_s"] / b["batch_s"], "{:.2f}x",
            b["loop_s"] > b["batch_s"])
    fast = results.get("fast_mode", {})
    f10 = _get(fast, "speed", "10s")
    if f10 and f10.get("upstream_s"):
        s = f10["upstream_s"] / f10["bf16_s"]
        tokens = _get(fast, "agreement", "gen.prompt_token", "mean")
        label = "opt-in bf16: warm extraction english/10s vs upstream"
        if tokens is not None:
            label += f" ({100 * tokens:.1f} % of tokens as exact)"
        add(label, ">= 1.5x", s, "{:.2f}x", s >= 1.5)
    return rows


def main(argv: list[str] | None = None) -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args(argv)
    summary_path = args.json or (C.BENCH_DIR / "results" / "summary.json")
    out_dir = summary_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    common = ["--cache", str(args.cache), "--threads", str(args.threads)]
    if args.quick:
        common.append("--quick")
    if args.upstream_python:
        common += ["--upstream-python", args.upstream_python]
    if args.weights:
        common += ["--weights", str(args.weights)]
    results: dict[str, dict] = {}
    for name in SCRIPTS:
        out = out_dir / f"{name}.json"
        print(f"\n=== {name} ===", flush=True)
        rc = subprocess.call([sys.executable, str(C.BENCH_DIR / f"{name}.py"), *common, "--json", str(out)])
        if rc != 0:
            print(f"{name} failed (exit {rc})", flush=True)
            continue
        results[name] = json.loads(Path(out).read_text())
    rows = summarise(results)
    env = next(iter(results.values()))["environment"] if results else {}
    if env:
        print(C.describe_environment(env))
    C.print_table("Targets of issue 5", ["target", "required", "measured", "met"], rows)
    summary_path.write_text(json.dumps({"environment": env, "targets": rows, "files": {
        k: str(out_dir / f"{k}.json") for k in results}}, indent=2) + "\n")
    print(f"wrote {summary_path}")


if __name__ == "__main__":
    main()
