"""Voice loading: a stored voice file -> conditionals ready on the device; a library lookup by name; the
memory each loaded voice costs.

voicebank: ``Voice.load(path, device=...)`` of its ``.safetensors`` voice file (and of upstream's ``.pt``),
``Library(path).get(name)`` (opening the library included) and ``lib.get(name)`` on an open library;
upstream: ``Conditionals.load(path).to(device)`` of the same voice saved as ``.pt``.  Memory: in a fresh
process per side, the tensor bytes of one loaded voice and the RSS growth for N loaded copies.

    python benchmarks/voice_loading.py [--quick] [--json OUT] [--upstream-python PATH] [--device cpu]
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import shutil
import sys
from pathlib import Path

import _common as C

MEMORY_VOICES = 200


def _tensor_bytes(voice) -> int:  # voicebank Voice
    return sum(t.numel() * t.element_size() for t in voice.tensors().values())


def memory_child(path: str, n: int, device: str) -> None:
    """(In a fresh process) RSS growth for ``n`` loaded copies of a voice; prints JSON."""
    import torch

    from voicebank.voice.voice import Voice

    torch.set_num_threads(1)
    voice = Voice.load(path, device=device)
    for _ in range(5):
        Voice.load(path, device=device)
    gc.collect()
    before = C.rss_mb()
    kept = [Voice.load(path, device=device) for _ in range(n)]
    gc.collect()
    after = C.rss_mb()
    assert len(kept) == n
    print(json.dumps({"tensor_bytes": _tensor_bytes(voice), "rss_delta_mb": after - before, "n_voices": n}))


def _library_rows(ctx: C.Context, voice_path: Path, n_voices: int, repeat: int, device: str) -> dict:
    """Time ``Library(path).get(name)`` and ``lib.get(name)``; ``{"error": ...}`` when there is no library."""
    try:
        from voicebank.library import Library
    except ImportError as e:
        return {"error": f"library not available ({e})"}
    from voicebank.voice.voice import Voice

    root = ctx.cache / "library-bench"
    shutil.rmtree(root, ignore_errors=True)
    try:
        lib = Library(root)
        base = Voice.load(voice_path)
        tmp = ctx.cache / "library-bench-files"
        tmp.mkdir(parents=True, exist_ok=True)
        names = []
        for i in range(n_voices):  # distinct voice files (a library refuses duplicates)
            meta = dataclasses.replace(base.metadata, source_sha256=hashlib.sha256(f"bench-{i}".encode()).hexdigest())
            voice = dataclasses.replace(base.with_exaggeration(0.3 + 0.001 * i), metadata=meta)
            path = voice.save(tmp / f"voice_{i:03d}.safetensors")
            names.append(lib.import_file(path, f"voice_{i:03d}").name)
        shutil.rmtree(tmp, ignore_errors=True)
        lib.close() if hasattr(lib, "close") else None
        name = names[len(names) // 2]

        def fresh() -> None:
            library = Library(root)
            library.get(name, device=device)
            if hasattr(library, "close"):
                library.close()

        fresh_times = C.time_calls(fresh, repeat=repeat, warmup=5)
        lib = Library(root)
        open_times = C.time_calls(lambda: lib.get(name, device=device), repeat=repeat, warmup=5)
        if hasattr(lib, "close"):
            lib.close()
        return {"voices": n_voices, "open_and_get": C.stats(fresh_times), "get": C.stats(open_times)}
    except Exception as e:  # the library is being written concurrently: report, do not fail the benchmark
        return {"error": f"library benchmark failed: {type(e).__name__}: {e}"}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="device the conditionals are loaded onto (default: cpu)")
    p.add_argument("--repeat", type=int, help="timed loads per variant (default 300; --quick: 60)")
    p.add_argument("--memory-child", nargs=2, metavar=("VOICE", "N"), help=argparse_hidden())
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.device)
        return
    ctx = C.setup("voice_loading", args)
    C.no_upstream_note(ctx)

    from voicebank.engine import Extractor
    from voicebank.voice.voice import Voice

    repeat = args.repeat or (60 if ctx.quick else 300)
    device = args.device
    weights, weights_desc = C.weights(ctx)
    voices_dir = ctx.cache / "voices"
    voices_dir.mkdir(parents=True, exist_ok=True)
    st_path, pt_path = voices_dir / "speech_10s.safetensors", voices_dir / "speech_10s.pt"
    if not (st_path.is_file() and pt_path.is_file()):
        voice = Extractor.from_local(weights).extract(C.clips(ctx)["10s"])
        voice.save(st_path)
        voice.save(pt_path)

    # --- load times, alternating blocks of the two sides ---
    blocks = 5
    per_block = max(1, repeat // blocks)
    vb_st: list[float] = []
    vb_pt: list[float] = []
    up_pt: list[float] = []
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(C.UpstreamServer(ctx)) if ctx.has_upstream else None
        if up is not None:
            up.call("load", path=str(pt_path), repeat=20)  # warm-up
        for _ in range(blocks):
            vb_st += C.time_calls(lambda: Voice.load(st_path, device=device), repeat=per_block, warmup=5)
            vb_pt += C.time_calls(lambda: Voice.load(pt_path, device=device), repeat=per_block, warmup=5)
            if up is not None:
                up_pt += up.call("load", path=str(pt_path), repeat=per_block)["times"]

    library = _library_rows(ctx, st_path, 20 if ctx.quick else 100, repeat, device)

    # --- memory per cached voice, each side in a fresh process ---
    n_mem = 50 if ctx.quick else MEMORY_VOICES
    run = C.run_child([sys.executable, str(Path(__file__).resolve()), "--memory-child", str(st_path), str(n_mem),
                       "--device", device], env=C.child_env(1), timeout=600)
    if run.returncode != 0:
        raise SystemExit(f"memory child failed:\n{run.stderr[-3000:]}")
    vb_mem = json.loads(run.stdout.strip().splitlines()[-1])
    up_mem = None
    if ctx.has_upstream:
        up_mem = C.upstream_task(ctx, "memory", ["--voice", str(pt_path), "--n-voices", str(n_mem)])

    env = C.environment(ctx, weights_desc)
    env["device"] = device
    s_st, s_pt = C.stats(vb_st), C.stats(vb_pt)
    s_up = C.stats(up_pt) if up_pt else None

    def ms(s: dict | None, key: str) -> str:
        return C.fmt(1000 * s[key], 3) if s else "n/a"

    rows = [["voicebank `Voice.load` (.safetensors)", ms(s_st, "median_s"), ms(s_st, "p95_s"),
             C.fmt(C.speedup(s_up["median_s"], s_st["median_s"]) if s_up else None, 1, "x")],
            ["voicebank `Voice.load` (upstream .pt)", ms(s_pt, "median_s"), ms(s_pt, "p95_s"),
             C.fmt(C.speedup(s_up["median_s"], s_pt["median_s"]) if s_up else None, 1, "x")]]
    if "error" in library:
        rows.append(["voicebank `Library(path).get(name)`", library["error"], "", ""])
    else:
        rows.append([f"voicebank `Library(path).get(name)` ({library['voices']} voices)",
                     ms(library["open_and_get"], "median_s"), ms(library["open_and_get"], "p95_s"), ""])
        rows.append(["voicebank `lib.get(name)` (library open)", ms(library["get"], "median_s"),
                     ms(library["get"], "p95_s"), ""])
    rows.append(["upstream `Conditionals.load(.pt).to(device)`", ms(s_up, "median_s"), ms(s_up, "p95_s"), ""])
    mem_rows = [["voicebank", C.fmt(vb_mem["tensor_bytes"] / 1024, 1), C.fmt(vb_mem["rss_delta_mb"] * 1024 / n_mem, 1)]]
    if up_mem is not None:
        mem_rows.append(["upstream", C.fmt(up_mem["tensor_bytes"] / 1024, 1),
                         C.fmt(up_mem["rss_delta_mb"] * 1024 / n_mem, 1)])
    print(C.describe_environment(env))
    C.print_table(f"Stored voice (10 s reference) -> conditionals ready on {device} ({len(vb_st)} loads)",
                  ["", "median ms", "p95 ms", "speedup"], rows)
    C.print_table(f"Memory per cached voice ({n_mem} loaded copies, fresh process)",
                  ["", "tensor KiB", "RSS KiB per voice"], mem_rows)
    result = {"environment": env, "voice_files": {"safetensors": str(st_path), "pt": str(pt_path)},
              "voicebank": {"load_safetensors": s_st, "load_pt": s_pt, "library": library, "memory": vb_mem},
              "upstream": {"load_pt": s_up, "memory": up_mem} if ctx.has_upstream else None,
              "targets": {"load<=2ms_median": s_st["median_s"] <= 0.002}}
    C.write_json(ctx, result)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
