"""Embedding-only throughput: speaker embeddings (``t3.speaker_emb``) of every clip in a directory.

voicebank: ``Extractor.from_local(DIR).embed(paths)`` (decode, resample, trim, mel, one batched LSTM pass);
upstream: each clip loaded as ``prepare_conditionals`` loads it (``librosa.load(sr=24000)`` then
``librosa.resample`` to 16 kHz), then one ``VoiceEncoder.embeds_from_wavs`` call.  Times include decoding.
The two sides alternate, one pass over the directory at a time.

    python benchmarks/embedding_throughput.py [--quick] [--json OUT] [--upstream-python PATH] [--dir DIR]
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import _common as C


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=C.REALSPEECH,
                   help="directory of clips, searched recursively (default: tests/data/realspeech)")
    p.add_argument("--repeat", type=int, help="timed passes (default 3; --quick: 1)")
    args = p.parse_args(argv)
    ctx = C.setup("embedding_throughput", args)
    C.no_upstream_note(ctx)

    from voicebank.engine import Extractor

    repeat = args.repeat or (1 if ctx.quick else 3)
    weights, weights_desc = C.weights(ctx)
    files = C.audio_files(args.dir)
    if not files:
        raise SystemExit(f"no audio files under {args.dir}")
    paths = [str(f) for f in files]
    audio_s = sum(C.duration_s(f) for f in files)

    ex = Extractor.from_local(weights)
    vb_times: list[float] = []
    up_times: list[float] = []
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(C.UpstreamServer(ctx)) if ctx.has_upstream else None
        if up is not None:
            up.call("ve", ckpt=str(weights))
            up.call("embed", clips=paths[:3])  # warm-up (numba compiles librosa's resampler on first use)
        ex.embed(paths[:3])  # warm-up
        for _ in range(repeat):
            t = time.perf_counter()
            emb = ex.embed(paths)
            vb_times.append(time.perf_counter() - t)
            if up is not None:
                up_times.append(up.call("embed", clips=paths)["seconds"])
    assert emb.shape == (len(paths), 256)

    env = C.environment(ctx, weights_desc)
    vb, upst = C.stats(vb_times), (C.stats(up_times) if up_times else None)

    def row(label: str, s: dict | None) -> list[str]:
        if s is None:
            return [label, "n/a", "n/a", "n/a", "n/a"]
        return [label, C.fmt(s["median_s"], 2), C.fmt(len(paths) / s["median_s"], 1),
                C.fmt(audio_s / s["median_s"], 0, "x"), C.fmt(audio_s / s["min_s"], 0, "x")]

    rows = [row("voicebank `Extractor.embed`", vb)]
    result: dict = {"environment": env, "dir": str(args.dir), "clips": len(paths), "audio_seconds": audio_s,
                    "repeat": repeat, "voicebank": vb, "upstream": upst,
                    "voicebank_realtime_factor": audio_s / vb["median_s"],
                    "voicebank_clips_per_s": len(paths) / vb["median_s"]}
    if upst is not None:
        rows.append(row("upstream `embeds_from_wavs`", upst))
        result["speedup"] = C.speedup(upst["median_s"], vb["median_s"])
        result["upstream_realtime_factor"] = audio_s / upst["median_s"]
    result["targets"] = {"realtime>=300x": result["voicebank_realtime_factor"] >= 300}
    print(C.describe_environment(env))
    title = (f"Speaker embeddings of {len(paths)} clips ({audio_s:.0f} s of audio) in {args.dir.name}/ "
             f"(median of {repeat})" + (f"; speedup {result['speedup']:.2f}x" if upst is not None else ""))
    C.print_table(title, ["", "seconds", "clips/s", "x real time", "x real time (best)"], rows)
    C.write_json(ctx, result)


if __name__ == "__main__":
    main()
