"""What one engine per process buys: embedding-only adds, and all four variants served by one process.

1. ``voicebank add CLIP --mode embedding`` against ``--mode conditionals`` (a new process each, a new library
   each): wall time and peak RSS.  An embedding-only add builds the voice encoder and CAM++, never the speech
   tokenizer.
2. One process extracting a 10 s clip in all four variants: through one ``Engine`` (one copy of each model)
   against four independent ``Extractor`` s (what a per-variant design holds: a model set per variant).
3. With ``--baseline SRC`` (the ``src`` directory of another voicebank checkout), the same ``extract`` and
   ``add`` commands run under both trees, alternating, so the ratios come from one run.

    python benchmarks/engine.py [--quick] [--json OUT] [--baseline OTHER_CHECKOUT/src]
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import _common as C

FOUR_VARIANTS = r"""
import json, resource, sys, torch
torch.set_num_threads(int(sys.argv[3]))
from voicebank.engine import Engine, Extractor
weights, clip, mode = sys.argv[1], sys.argv[2], sys.argv[4]
variants = ["english", "multilingual", "turbo", "vc"]
if mode == "engine":
    engine = Engine(weights)
    for v in variants:
        engine.extract(clip, v)
    loads = dict(engine.loads)
else:
    extractors = [Extractor(weights, variant=v) for v in variants]
    for ex in extractors:
        ex.extract(clip)
    loads = {k: sum(ex.engine.loads[k] for ex in extractors) for k in extractors[0].engine.loads}
rss = [float(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmRSS")][0]
print(json.dumps({"rss_mb": rss, "loads": loads}))
"""


def cli(src: Path | None) -> list[str]:
    return [sys.executable, "-m", "voicebank.cli"]


def env_for(ctx: C.Context, src: Path | None) -> dict[str, str]:
    env = C.child_env(ctx.threads)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    else:
        env["PYTHONPATH"] = str(C.REPO / "src")
    return env


def run_ok(cmd: list[str], env: dict[str, str]) -> C.ChildRun:
    run = C.run_child(cmd, env=env, timeout=900)
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])} ... failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return run


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, help="src directory of another voicebank checkout to compare with")
    args = p.parse_args(argv)
    ctx = C.setup("engine", args)
    weights, weights_desc = C.weights(ctx)
    clip = C.clips(ctx)["10s"]
    repeat = 1 if ctx.quick else 3
    trees: dict[str, Path | None] = {"this tree": None}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="vb-engine-"))
    runs: dict[tuple[str, str], list[C.ChildRun]] = {}
    try:
        jobs = {
            "add --mode embedding": lambda lib: [*cli(None), "add", str(clip), "--mode", "embedding", "--library",
                                                 str(lib), "--weights", str(weights), "--force"],
            "add --mode conditionals": lambda lib: [*cli(None), "add", str(clip), "--mode", "conditionals",
                                                    "--library", str(lib), "--weights", str(weights), "--force"],
            "extract": lambda lib: [*cli(None), "extract", str(clip), "-o", str(lib / "v.safetensors"), "--weights",
                                    str(weights)],
        }
        for i in range(repeat + 1):  # the first round only warms the page cache
            for job, make in jobs.items():
                for tree, src in trees.items():
                    lib = tmp / f"lib-{i}-{job.replace(' ', '_')}-{tree.replace(' ', '_')}"
                    lib.mkdir()
                    run = run_ok(make(lib), env_for(ctx, src))
                    if i:
                        runs.setdefault((job, tree), []).append(run)
        four = {}
        for mode in ("engine", "extractors"):
            out = run_ok([sys.executable, "-c", FOUR_VARIANTS, str(weights), str(clip), str(ctx.threads), mode],
                         env_for(ctx, None))
            four[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(job: str, tree: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs[(job, tree)])

    env = C.environment(ctx, weights_desc)
    print(C.describe_environment(env))
    rows = []
    result: dict = {"environment": env, "clip": str(clip), "repeat": repeat, "commands": {}, "four_variants": four}
    for job in jobs:
        row = [f"`voicebank {job}`", C.fmt(med(job, "this tree", "wall_s"), 2),
               C.fmt(med(job, "this tree", "peak_rss_mb"), 0)]
        entry = {"wall_s": med(job, "this tree", "wall_s"), "peak_rss_mb": med(job, "this tree", "peak_rss_mb")}
        if "baseline" in trees:
            bw, br = med(job, "baseline", "wall_s"), med(job, "baseline", "peak_rss_mb")
            row += [C.fmt(bw, 2), C.fmt(br, 0), C.fmt(bw / entry["wall_s"], 2, "x"),
                    C.fmt(br / entry["peak_rss_mb"], 2, "x")]
            entry["baseline"] = {"wall_s": bw, "peak_rss_mb": br}
        rows.append(row)
        result["commands"][job] = entry
    headers = ["command (new process, 10 s clip)", "wall s", "peak RSS MiB"]
    if "baseline" in trees:
        headers += ["baseline wall s", "baseline RSS MiB", "baseline / this (time)", "baseline / this (RSS)"]
    C.print_table(f"Commands, median of {repeat}", headers, rows)
    C.print_table("One process extracting all four variants of a 10 s clip",
                  ["design", "RSS MiB after", "voice encoders", "tokenizers", "CAM++"],
                  [[name, C.fmt(v["rss_mb"], 0), v["loads"]["voice_encoder"], v["loads"]["speech_tokenizer"],
                    v["loads"]["speaker_encoder"]] for name, v in
                   (("one Engine", four["engine"]), ("four Extractors, one per variant", four["extractors"]))])
    C.write_json(ctx, result)


if __name__ == "__main__":
    main()
