"""Warm extraction: conditionals of one clip with the models already loaded, per variant and clip length,
and a batch of clips (``extract_many``) against a loop of single extractions.

voicebank: ``Extractor.from_local(DIR, variant=...).extract(clip)`` / ``.extract_many(clips)``;
upstream: ``prepare_conditionals(clip)`` (``set_target_voice`` for VC) of models built once (English from
``ChatterboxTTS.from_local``; the other variants reuse its S3Gen and voice encoder, which hold the same
tensors their own ``from_local`` would load for conditioning).  Upstream has no batch API: its batch row is
a loop.  The two sides alternate one measurement at a time.  Turbo refuses clips of 5 s or less, so it has
no 3 s row.

    python benchmarks/warm_extraction.py [--quick] [--json OUT] [--upstream-python PATH]
                                         [--variants english,turbo] [--batch N] [--repeat N]
"""

from __future__ import annotations

import contextlib
import gc
import time

import _common as C

VARIANTS = ("english", "multilingual", "turbo", "vc")
BATCH_VARIANTS = ("english", "vc")
TURBO_MIN_SECONDS = 5.0


def _difference(a, b) -> str:  # two lists of Voice
    """Either "identical" or the largest difference between two lists of conditionals."""
    import torch

    worst, where = 0.0, ""
    for x, y in zip(a, b, strict=True):
        tx, ty = x.tensors(), y.tensors()
        if tx.keys() != ty.keys():
            return "different tensors"
        for k in tx:
            if not torch.equal(tx[k], ty[k]):
                d = float((tx[k].double() - ty[k].double()).abs().max())
                if d >= worst:
                    worst, where = d, k
    return "identical" if not where else f"max |diff| {worst:.2g} ({where})"


def gemm_floor(ex, voice, repeat: int) -> dict[str, float]:
    """Seconds the speech tokenizer's matrix products alone take for ``voice``'s windows: the projections
    and MLPs of every block (~99 % of the tokenizer's arithmetic) on random rows, once with the kernel
    voicebank uses (oneDNN) and once with ``F.linear`` (MKL, what upstream's ``nn.Linear`` runs)."""
    import torch
    import torch.nn.functional as F

    rows = voice.gen.prompt_token.shape[1] + (voice.t3.cond_prompt_speech_tokens.shape[1] if voice.t3 else 0)
    layers = [m for m in ex.speech_tokenizer.encoder.blocks.modules() if isinstance(m, torch.nn.Linear)]
    x = {n: torch.randn(rows, n) for n in {m.in_features for m in layers}}
    flops = sum(2 * rows * m.in_features * m.out_features for m in layers)

    def run(fn) -> float:
        with torch.inference_mode():
            return min(C.time_calls(lambda: [fn(m, x[m.in_features]) for m in layers], repeat=repeat))

    best = run(lambda m, v: m(v))
    mkl = run(lambda m, v: F.linear(v, m.weight, m.bias))
    return {"rows": rows, "gflop": flops / 1e9, "onednn_s": best, "mkl_s": mkl}


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants (default: all four)")
    p.add_argument("--batch", type=int, help="clips in the batch comparison (default 100; --quick: 20)")
    p.add_argument("--repeat", type=int, help="timed extractions per clip (default 5; --quick: 2)")
    args = p.parse_args(argv)
    ctx = C.setup("warm_extraction", args)
    C.no_upstream_note(ctx)

    from voicebank.engine import Extractor

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    repeat = args.repeat or (2 if ctx.quick else 5)
    n_batch = args.batch or (20 if ctx.quick else 100)
    weights, weights_desc = C.weights(ctx)
    clips = C.clips(ctx)
    durations = {label: C.duration_s(path) for label, path in clips.items()}
    batch = [str(c) for c in C.batch_clips(ctx, n_batch)]

    vb_single: dict[str, list[float]] = {}
    up_single: dict[str, list[float]] = {}
    vb_batch: dict[str, dict] = {}
    floors: dict[str, dict[str, float]] = {}
    up_loop: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(C.UpstreamServer(ctx)) if ctx.has_upstream else None
        if up is not None:
            print("upstream: building the models ...", flush=True)
            up.call("models", ckpt=str(weights))
        for variant in variants:
            ex = Extractor.from_local(weights, variant=variant).load()
            for label, path in clips.items():
                if variant == "turbo" and durations[label] <= TURBO_MIN_SECONDS:
                    continue
                key = f"{variant}/{label}"
                vb_single[key], up_single[key] = [], []
                voice = ex.extract(path)  # warm-up
                floors[key] = gemm_floor(ex, voice, repeat)
                if up is not None:
                    up.call("prepare", variant=variant, clip=str(path))
                for _ in range(repeat):  # alternate the two sides
                    t = time.perf_counter()
                    ex.extract(path)
                    vb_single[key].append(time.perf_counter() - t)
                    if up is not None:
                        up_single[key].append(up.call("prepare", variant=variant, clip=str(path))["seconds"])
                print(f"{key:18s} voicebank {1000 * min(vb_single[key]):7.0f} ms"
                      + (f"   upstream {1000 * min(up_single[key]):7.0f} ms" if up_single[key] else ""), flush=True)
            if variant in BATCH_VARIANTS:
                ex.extract(batch[0])
                t = time.perf_counter()
                looped = [ex.extract(c) for c in batch]
                loop_s = time.perf_counter() - t
                if up is not None:
                    up_loop[variant] = {"total_s": up.call("loop", variant=variant, clips=batch)["seconds"],
                                        "n": len(batch)}
                t = time.perf_counter()
                batched = ex.extract_many(batch)
                batch_s = time.perf_counter() - t
                vb_batch[variant] = {"loop_s": loop_s, "batch_s": batch_s, "n": len(batch),
                                     "batch_vs_loop": _difference(looped, batched)}
                print(f"{variant} x{len(batch)}: loop {loop_s:.1f} s, extract_many {batch_s:.1f} s"
                      + (f", upstream loop {up_loop[variant]['total_s']:.1f} s" if variant in up_loop else ""),
                      flush=True)
            del ex
            gc.collect()

    vb_stats = {k: C.stats(v) for k, v in vb_single.items()}
    up_stats = {k: C.stats(v) for k, v in up_single.items() if v}
    env = C.environment(ctx, weights_desc)
    rows = []
    for key, s in vb_stats.items():
        variant, label = key.split("/")
        u = up_stats.get(key)
        rows.append([variant, label, C.fmt(1000 * s["median_s"], 0), C.fmt(1000 * s["min_s"], 0),
                     C.fmt(1000 * u["median_s"], 0) if u else "n/a", C.fmt(1000 * u["min_s"], 0) if u else "n/a",
                     C.fmt(C.speedup(u["median_s"], s["median_s"]) if u else None, 2, "x"),
                     C.fmt(1000 * floors[key]["onednn_s"], 0), C.fmt(s["median_s"] / floors[key]["onednn_s"], 2, "x"),
                     C.fmt(1000 * floors[key]["mkl_s"], 0), C.fmt(s["median_s"] / floors[key]["mkl_s"], 2, "x")])
    brows = []
    for variant, b in vb_batch.items():
        u = up_loop.get(variant)
        brows.append([variant, str(b["n"]), C.fmt(1000 * b["batch_s"] / b["n"], 0),
                      C.fmt(1000 * b["loop_s"] / b["n"], 0), C.fmt(b["loop_s"] / b["batch_s"], 2, "x"),
                      C.fmt(1000 * u["total_s"] / u["n"], 0) if u else "n/a",
                      C.fmt(C.speedup(u["total_s"], b["batch_s"]) if u else None, 2, "x"),
                      b["batch_vs_loop"]])
    print(C.describe_environment(env))
    C.print_table(f"Warm extraction of one clip (median and min of {repeat}, alternating with upstream)",
                  ["variant", "clip", "voicebank ms", "(min)", "upstream ms", "(min)", "speedup",
                   "GEMM floor ms", "vs floor", "MKL floor ms", "vs MKL floor"], rows)
    print("GEMM floor: the speech tokenizer's projections and MLPs alone (the issue's 'floor'), on random rows "
          "of the clip's token count, with voicebank's kernel (oneDNN) and with upstream's (F.linear, MKL).")
    C.print_table(f"Batch of {n_batch} clips of {C.BATCH_CLIP_SECONDS} s",
                  ["variant", "clips", "extract_many ms/clip", "loop ms/clip", "batch vs loop",
                   "upstream loop ms/clip", "speedup vs upstream", "batch vs loop results"], brows)
    result = {"environment": env, "clips": {k: str(v) for k, v in clips.items()}, "durations_s": durations,
              "repeat": repeat,
              "voicebank": {"single": vb_stats, "batch": vb_batch}, "gemm_floor": floors,
              "upstream": {"single": up_stats, "loop": up_loop} if ctx.has_upstream else None,
              "speedup_median": {k: C.speedup(up_stats[k]["median_s"], v["median_s"])
                                 for k, v in vb_stats.items() if k in up_stats}}
    C.write_json(ctx, result)


if __name__ == "__main__":
    main()
