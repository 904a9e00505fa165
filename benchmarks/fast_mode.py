"""The opt-in ``precision="bf16"`` mode: its speed, and how far its conditionals are from exact mode.

bf16 runs the speech tokenizer's matrix products in bfloat16; everything else is unchanged, so the speaker
embedding, the x-vector and the prompt mel stay bit-identical and only speech tokens can differ.  Agreement
is measured on every clip of a directory (default ``tests/data/realspeech``); speed on the 3, 10 and 22 s
clips, alternating exact and bf16 (and upstream, when given).

    python benchmarks/fast_mode.py [--quick] [--json OUT] [--upstream-python PATH] [--dir DIR]
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import _common as C

GOLDEN_TOKEN_AGREEMENT = 0.99  # the parity tests' tolerance on speech tokens


def _agreement(exact, fast) -> dict[str, float]:  # two voicebank Voices
    import torch

    a, b = exact.tensors(), fast.tensors()
    out: dict[str, float] = {}
    for key in ("gen.prompt_token", "t3.cond_prompt_speech_tokens"):
        if key in a:
            n = min(a[key].shape[1], b[key].shape[1])
            out[key] = (a[key][:, :n] == b[key][:, :n]).float().mean().item() if n else 1.0
    same = [k for k in ("t3.speaker_emb", "gen.embedding", "gen.prompt_feat") if k in a]
    out["other_tensors_identical"] = float(all(torch.equal(a[k], b[k]) for k in same))
    return out


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=C.REALSPEECH, help="clips for the agreement measurement")
    p.add_argument("--variant", default="english", help="variant (default: english)")
    p.add_argument("--repeat", type=int, help="timed extractions per clip and mode (default 5; --quick: 2)")
    args = p.parse_args(argv)
    ctx = C.setup("fast_mode", args)
    C.no_upstream_note(ctx)

    from voicebank.engine import Extractor

    repeat = args.repeat or (2 if ctx.quick else 5)
    weights, weights_desc = C.weights(ctx)
    clips = C.clips(ctx)
    files = [str(f) for f in C.audio_files(args.dir)]
    if ctx.quick:
        files = files[:15]
    exact = Extractor.from_local(weights, variant=args.variant).load()
    fast = Extractor.from_local(weights, variant=args.variant, precision="bf16").load()

    # --- agreement ---
    per_clip: dict[str, dict[str, float]] = {}
    for f in files:
        try:
            per_clip[f] = _agreement(exact.extract(f), fast.extract(f))
        except Exception as e:  # e.g. Turbo refuses short clips: skip them
            print(f"skipped {f}: {e}")
    keys = sorted({k for d in per_clip.values() for k in d if k.startswith(("gen.", "t3."))})
    agreement = {}
    for k in keys:
        vals = [d[k] for d in per_clip.values() if k in d]
        agreement[k] = {"mean": statistics.fmean(vals), "min": min(vals),
                        "clips_all_equal": sum(v == 1.0 for v in vals) / len(vals),
                        "clips_within_golden_tolerance": sum(v >= GOLDEN_TOKEN_AGREEMENT for v in vals) / len(vals)}
    others_identical = all(d["other_tensors_identical"] == 1.0 for d in per_clip.values())

    # --- speed, alternating ---
    times: dict[str, dict[str, list[float]]] = {label: {"exact": [], "bf16": [], "upstream": []} for label in clips}
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(C.UpstreamServer(ctx)) if ctx.has_upstream else None
        if up is not None:
            up.call("models", ckpt=str(weights))
        for label, path in clips.items():
            if args.variant == "turbo" and C.duration_s(path) <= 5.0:
                continue
            exact.extract(path)
            fast.extract(path)
            if up is not None:
                up.call("prepare", variant=args.variant, clip=str(path))
            for _ in range(repeat):
                for mode, ex in (("exact", exact), ("bf16", fast)):
                    t = time.perf_counter()
                    ex.extract(path)
                    times[label][mode].append(time.perf_counter() - t)
                if up is not None:
                    times[label]["upstream"].append(up.call("prepare", variant=args.variant, clip=str(path))["seconds"])

    env = C.environment(ctx, weights_desc)
    speed_rows = []
    speed: dict[str, dict] = {}
    for label, t in times.items():
        if not t["exact"]:
            continue
        e, f = statistics.median(t["exact"]), statistics.median(t["bf16"])
        u = statistics.median(t["upstream"]) if t["upstream"] else None
        speed[label] = {"exact_s": e, "bf16_s": f, "upstream_s": u}
        speed_rows.append([label, C.fmt(1000 * e, 0), C.fmt(1000 * f, 0), C.fmt(e / f, 2, "x"),
                           C.fmt(1000 * u, 0) if u else "n/a", C.fmt(C.speedup(u, e), 2, "x"),
                           C.fmt(C.speedup(u, f), 2, "x")])
    agree_rows = [[k, f"{100 * v['mean']:.2f} %", f"{100 * v['min']:.2f} %", f"{100 * v['clips_all_equal']:.0f} %",
                   f"{100 * v['clips_within_golden_tolerance']:.0f} %"] for k, v in agreement.items()]
    print(C.describe_environment(env))
    C.print_table(f"{args.variant}: exact vs bf16 extraction (median of {repeat}, alternating)",
                  ["clip", "exact ms", "bf16 ms", "bf16 speedup", "upstream ms", "exact vs upstream",
                   "bf16 vs upstream"], speed_rows)
    C.print_table(f"bf16 agreement with exact mode over {len(per_clip)} clips of {args.dir.name}/ (speaker embedding,"
                  f" x-vector and prompt mel identical: {'yes' if others_identical else 'NO'})",
                  ["tokens", "mean equal", "worst clip", "clips all equal", f"clips >= {GOLDEN_TOKEN_AGREEMENT:.0%}"],
                  agree_rows)
    C.write_json(ctx, {"environment": env, "variant": args.variant, "speed": speed, "agreement": agreement,
                       "other_tensors_identical": others_identical, "per_clip": per_clip})


if __name__ == "__main__":
    main()
