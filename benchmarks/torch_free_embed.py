"""Speaker embeddings without torch (issue 21), side by side in one run: the numpy voice encoder against torch's.

1. Cold ``voicebank embed`` of a 10 s clip in a NEW process (spawn to exit; peak RSS from ``wait4``): the numpy
   path (``voicebank embed``, which never imports torch), the same command in a torch-free virtualenv (if one is
   given or ``.ci-venv-torchfree`` exists), and the torch path (a new process that imports torch and embeds the
   clip with the torch voice encoder, as ``voicebank embed`` did before).  One untimed round first (warm file
   cache, cold processes); the kinds alternate round after round.
2. Warm throughput, clips/s, on the real-speech set: the same front end (decode, resample, trim, mel, on the
   engine's decoding threads), then the partials of all clips through the numpy or the torch LSTM; passes
   alternate.  The LSTM-only time is reported beside it.
3. Install size: the torch-free virtualenv's ``site-packages`` against torch's own package.

    python benchmarks/torch_free_embed.py [--quick] [--repeat N] [--torch-free-venv DIR] [--json OUT]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import _common as C

LAUNCH = r"""
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, usage = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "rc": os.waitstatus_to_exitcode(status),
                  "err": err.decode(errors="replace")[-2000:]}))
"""
"""Spawns the measured command from a small process: a child's ``ru_maxrss`` counts the memory of the process that
forked it until it calls ``exec``, so spawned from this benchmark (torch loaded, ~250 MB) every child would report at
least that much."""

TORCH_EMBED = r"""
import os, sys
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[4]))
from voicebank.audio.reference import prepare_reference
from voicebank.engine import Engine
ve = Engine(sys.argv[1]).voice_encoder()
with torch.inference_mode():
    emb = ve.embed_partials([ve.prepare(prepare_reference(sys.argv[2]).wav16)]).numpy()
np.save(sys.argv[3], emb)
sys.stdout.flush(); os._exit(0)
"""


def du_mb(path: Path) -> float:
    """Bytes of the files under ``path`` (links not followed), in MB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total / 1e6


def site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    return found[0] if found else None


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, help="cold rounds and warm passes (default 5; --quick: 2)")
    p.add_argument("--torch-free-venv", type=Path, default=C.REPO / ".ci-venv-torchfree",
                   help="a virtualenv with voicebank and no torch (default: .ci-venv-torchfree, the CI's)")
    args = p.parse_args(argv)
    ctx = C.setup("torch_free_embed", args)
    repeat = args.repeat or (2 if ctx.quick else 5)
    weights, weights_desc = C.weights(ctx)
    clip = C.clips(ctx)["10s"]
    out = ctx.cache / "embed.npy"
    env = C.child_env(ctx.threads)

    script = Path(sys.executable).parent / "voicebank"
    kinds: dict[str, list[str]] = {
        "numpy (`voicebank embed`)": [str(script), "embed", str(clip), "--weights", str(weights), "-o", str(out)],
        "torch voice encoder (new process)": [sys.executable, "-c", TORCH_EMBED, str(weights), str(clip), str(out),
                                              str(ctx.threads)],
    }
    # the floor on this machine now: an interpreter that imports numpy and exits
    kinds["floor: `python -c 'import numpy'`"] = [sys.executable, "-c", "import numpy"]
    tf = args.torch_free_venv.expanduser()
    if (tf / "bin" / "voicebank").is_file():
        kinds["numpy, torch-free virtualenv"] = [str(tf / "bin" / "voicebank"), "embed", str(clip), "--weights",
                                                 str(weights), "-o", str(out)]
    else:
        print(f"no torch-free virtualenv at {tf} (run .ci/run, or pass --torch-free-venv): its row is skipped")

    import json

    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for i in range(repeat + 1):
        for name, cmd in kinds.items():
            launched = C.run_child([sys.executable, "-I", "-S", "-c", LAUNCH, *cmd], env=env, timeout=300)
            run = json.loads(launched.stdout.strip().splitlines()[-1]) if launched.returncode == 0 else None
            if run is None or run["rc"] != 0:
                raise SystemExit(f"{name} failed: {run['err'] if run else launched.stderr[-2000:]}")
            if i:  # the first round warms the file cache
                runs[name].append(run)
    cold = {k: {"wall": C.stats([r["wall_s"] for r in v]), "peak_rss_mb": max(r["peak_rss_mb"] for r in v)}
            for k, v in runs.items()}

    # --- warm throughput --------------------------------------------------------------------------------
    import numpy as np
    import torch

    from voicebank.audio.clip import Clip
    from voicebank.audio.reference import prepare_reference
    from voicebank.engine import Engine
    from voicebank.engine.runtime import decoded_ahead

    engine = Engine(weights)
    files = C.audio_files(C.REALSPEECH)
    if ctx.quick:
        files = files[:10]
    audio_s = sum(C.duration_s(f) for f in files)
    nve, tve = engine.numpy_voice_encoder(), engine.voice_encoder()

    def front_end(path: Path) -> np.ndarray:
        return nve.prepare(prepare_reference(Clip.read(str(path))).wav16)

    def numpy_pass() -> tuple[float, float]:
        t = time.perf_counter()
        partials = list(decoded_ahead(front_end, files, lookahead=len(files)))
        t_lstm = time.perf_counter()
        nve.embed_partials(partials)
        return time.perf_counter() - t, time.perf_counter() - t_lstm

    def torch_pass() -> tuple[float, float]:
        t = time.perf_counter()
        partials = list(decoded_ahead(front_end, files, lookahead=len(files)))
        t_lstm = time.perf_counter()
        with torch.inference_mode():
            tve.embed_partials(partials)
        return time.perf_counter() - t, time.perf_counter() - t_lstm

    warm: dict[str, list[tuple[float, float]]] = {"numpy": [], "torch": []}
    numpy_pass(), torch_pass()  # untimed: models and caches warm
    for _ in range(repeat):
        warm["numpy"].append(numpy_pass())
        warm["torch"].append(torch_pass())
    warm_stats = {k: {"clips_per_s": len(files) / statistics.median(t for t, _ in v),
                      "pass_s": statistics.median(t for t, _ in v), "lstm_s": statistics.median(x for _, x in v)}
                  for k, v in warm.items()}

    # --- install size -----------------------------------------------------------------------------------
    torch_mb = du_mb(Path(torch.__file__).parent)
    tf_site = site_packages(tf)
    tf_mb = du_mb(tf_site) if tf_site else None
    tf_torch = tf_site is not None and (tf_site / "torch").exists()

    env_info = C.environment(ctx, weights_desc)
    rows = [[name, C.fmt(c["wall"]["median_s"], 2), C.fmt(c["wall"]["min_s"], 2), C.fmt(c["peak_rss_mb"], 0)]
            for name, c in cold.items()]
    t1 = C.print_table(f"Cold `embed` of a 10 s clip, new process ({repeat} rounds; target <= 0.5 s, <= 150 MB)",
                       ["path", "median s", "min s", "peak RSS MB"], rows)
    ratio = warm_stats["torch"]["clips_per_s"] / warm_stats["numpy"]["clips_per_s"]
    rows = [[k, C.fmt(v["clips_per_s"], 1), C.fmt(v["pass_s"], 2), C.fmt(v["lstm_s"], 2)]
            for k, v in warm_stats.items()]
    t2 = C.print_table(f"Warm throughput, {len(files)} real-speech clips ({audio_s:.0f} s of audio); torch / numpy "
                       f"= {ratio:.2f}x (target <= 1.5x)", ["voice encoder", "clips/s", "pass s", "LSTM s"], rows)
    rows = [["torch-free virtualenv (site-packages" + (", TORCH FOUND" if tf_torch else "") + ")",
             C.fmt(tf_mb, 0)], ["torch alone (this environment's torch package)", C.fmt(torch_mb, 0)]]
    t3 = C.print_table("Install size", ["what", "MB"], rows)
    print(C.describe_environment(env_info))
    C.write_json(ctx, {"environment": env_info, "cold": cold, "warm": warm_stats, "warm_ratio_torch_over_numpy": ratio,
                       "install_mb": {"torch_free_venv": tf_mb, "torch_package": torch_mb},
                       "tables": [t1, t2, t3]})


if __name__ == "__main__":
    main()
