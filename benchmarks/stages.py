"""Where a warm extraction spends its time: each stage of ``Extractor.conditionals_of`` timed on its own.

For the 3, 10 and 22 s clips and one variant (default English): decoding and resampling, the S3Gen mel,
the 24 -> 16 kHz resampling, the fbank and CAM++, the tokenizer's log-mels and network, the voice encoder,
and the whole ``extract`` call for comparison; then the tokenizer's GEMM floor (its projections alone, see
``warm_extraction.py``).  voicebank only: this is for finding the next thing to optimise.

    python benchmarks/stages.py [--quick] [--json OUT] [--variant english] [--repeat N]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import _common as C
from warm_extraction import gemm_floor


def main(argv: list[str] | None = None) -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--variant", default="english", help="english, multilingual, turbo or vc (default: english)")
    p.add_argument("--repeat", type=int, help="timed runs per stage (default 9; --quick: 3)")
    args = p.parse_args(argv)
    ctx = C.setup("stages", args)

    import torch

    from voicebank.audio.dsp import s3gen_mel
    from voicebank.audio.sinc import sinc_resample
    from voicebank.audio.tokenizer_mel import log_mel_batch
    from voicebank.chatterbox import GEN_REFERENCE_SECONDS, VARIANT_SPECS
    from voicebank.engine import Extractor
    from voicebank.models.campplus import CAMPPlus

    repeat = args.repeat or (3 if ctx.quick else 9)
    weights, weights_desc = C.weights(ctx)
    ex = Extractor.from_local(weights, variant=args.variant).load()
    spec = VARIANT_SPECS[ex.variant]
    tokenizer, campplus = ex.speech_tokenizer, ex.speaker_encoder
    ve = ex.voice_encoder if spec.t3_prompt_seconds is not None else None

    table: dict[str, dict[str, float]] = {}
    for label, path in C.clips(ctx).items():
        if ex.variant == "turbo" and C.duration_s(path) <= 5.0:
            continue
        times: dict[str, list[float]] = {}

        def timed(name: str, fn: Callable[..., Any], *args: Any, times: dict[str, list[float]] = times) -> Any:
            t = time.perf_counter()
            out = fn(*args)
            times.setdefault(name, []).append(time.perf_counter() - t)
            return out

        voice = ex.extract(path)  # warm-up
        for _ in range(repeat):
            with torch.inference_mode():
                ref = timed("decode + resample (+ loudness for Turbo)", ex.reference, path)
                ref24 = torch.from_numpy(ref.wav24[: GEN_REFERENCE_SECONDS * 24000])
                timed("S3Gen mel (prompt_feat)", s3gen_mel, ref24)
                ref16 = timed("24 -> 16 kHz sinc resampling", sinc_resample, ref24, 24000, 16000)
                feats = timed("fbank", CAMPPlus.xvector_features, ref16)
                timed("CAM++ network", campplus, feats)
                windows = [ref16]
                if spec.t3_prompt_seconds is not None:
                    windows.append(torch.from_numpy(ref.wav16[: spec.t3_prompt_seconds * 16000]))
                mels, lengths = timed("tokenizer log-mels", log_mel_batch, windows)
                timed("tokenizer network", tokenizer, mels, lengths)
                if ve is not None:
                    partials = timed("voice encoder mel + partials", ve.prepare, ref.wav16)
                    timed("voice encoder LSTM", ve.embed_partials, [partials])
            timed("extract() as a whole", ex.extract, path)
        floor = gemm_floor(ex, voice, repeat)
        table[label] = {k: statistics.median(v) for k, v in times.items()}
        table[label]["tokenizer GEMM floor (oneDNN)"] = floor["onednn_s"]
        print(f"{label}: extract {1000 * table[label]['extract() as a whole']:.0f} ms", flush=True)

    env = C.environment(ctx, weights_desc)
    print(C.describe_environment(env))
    labels = list(table)
    stages = list(next(iter(table.values()))) if table else []
    rows = [[stage] + [C.fmt(1000 * table[label][stage], 1) for label in labels] for stage in stages]
    C.print_table(f"{ex.variant}: median ms of {repeat} per stage", ["stage"] + [f"{label} ms" for label in labels],
                  rows)
    C.write_json(ctx, {"environment": env, "variant": ex.variant, "repeat": repeat, "stages_s": table})


if __name__ == "__main__":
    main()
