"""Real-derived speaker embeddings for measuring an approximate index: many crops of real speech, embedded.

Random vectors are no test of an index (they have no neighbourhoods); these do: each row is the speaker
embedding (Resemblyzer's trained voice encoder, run as voicebank's numpy voice encoder) of a 1.5-4 s window at
a random offset of one of the 100 real clips (54 speakers), at a random gain (-12..+6 dB) and, for half of
them, with white noise at 10-30 dB SNR.  So each speaker contributes hundreds of near-duplicate rows, which
is what a duplicate check and a search see in a large library of real voices.

    python benchmarks/ann_embeddings.py --audio /work/shared/realspeech --count 12000 \
        --out tests/data/ann/embeddings.npy

``--audio``: a folder with the clips and their ``MANIFEST.tsv`` (``tests/data/realspeech`` works too: the same
recordings, the impostors cut to 8 s).  Output: (count, 256) float16 unit rows, and a ``.tsv`` beside it with
each row's speaker, clip, window, gain and SNR.  ``--jobs`` processes share the work (about 30 rows/s each).
"""

from __future__ import annotations

import argparse
import csv
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

SR = 16_000


def read_clip(path: Path) -> np.ndarray:
    """A clip as mono float32 at 16 kHz."""
    import soundfile as sf
    import soxr

    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    return soxr.resample(wav, sr, SR).astype(np.float32) if sr != SR else wav


def plan(clips: list[tuple[str, str, int]], count: int, seed: int) -> list[tuple[int, int, int, float, float]]:
    """``count`` windows ``(clip, start, length, gain_db, snr_db or inf)`` spread over the clips by length."""
    rng = np.random.default_rng(seed)
    lengths = np.array([n for _, _, n in clips], dtype=np.float64)
    weights = lengths / lengths.sum()
    out = []
    for c in rng.choice(len(clips), size=count, p=weights):
        n = clips[c][2]
        length = min(n, int(rng.uniform(1.5, 4.0) * SR))
        start = int(rng.integers(0, max(1, n - length + 1)))
        snr = float(rng.uniform(10, 30)) if rng.random() < 0.5 else float("inf")
        out.append((int(c), start, length, float(rng.uniform(-12, 6)), snr))
    return out


def _embed(args: tuple[list[str], list[tuple[int, int, int, float, float]], int]) -> np.ndarray:
    paths, windows, seed = args
    from voicebank.models.voice_encoder_numpy import NumpyVoiceEncoder

    from audio_fixtures import resemblyzer_weights

    weights = resemblyzer_weights()
    if weights is None:
        raise SystemExit("resemblyzer (its trained weights) is not installed")
    encoder = NumpyVoiceEncoder.from_file(weights)
    wavs = [read_clip(Path(p)) for p in paths]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(0, len(windows), 200):
        crops = []
        for c, start, length, gain_db, snr in windows[i: i + 200]:
            x = wavs[c][start: start + length] * np.float32(10 ** (gain_db / 20))
            if np.isfinite(snr):
                power = float(np.mean(x**2)) or 1e-8
                x = x + rng.standard_normal(x.size).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr / 10)))
            crops.append(np.clip(x, -1, 1))
        out.append(encoder.embed_utterances(crops))
    return np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", type=Path, default=REPO / "tests" / "data" / "realspeech")
    p.add_argument("--count", type=int, default=12_000)
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "ann" / "embeddings.npy")
    a = p.parse_args()
    with (a.audio / "MANIFEST.tsv").open() as f:
        manifest = [(r["path"], r["speaker_id"]) for r in csv.DictReader(f, delimiter="\t")]
    paths = [str(a.audio / path) for path, _ in manifest]
    clips = [(path, speaker, read_clip(Path(p)).size) for (path, speaker), p in zip(manifest, paths, strict=True)]
    windows = plan(clips, a.count, a.seed)
    parts = np.array_split(np.arange(len(windows)), a.jobs)
    with ProcessPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(_embed, [(paths, [windows[i] for i in part], a.seed + j)
                                      for j, part in enumerate(parts)]))
    emb = np.concatenate(rows).astype(np.float16)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(a.out, emb)
    with a.out.with_suffix(".tsv").open("w") as f:
        f.write("row\tspeaker_id\tclip\tstart_s\tlength_s\tgain_db\tsnr_db\n")
        for r, (c, start, length, gain_db, snr) in enumerate(windows):
            f.write(f"{r}\t{clips[c][1]}\t{clips[c][0]}\t{start / SR:.3f}\t{length / SR:.3f}\t{gain_db:.1f}\t"
                    f"{snr:.1f}\n")


if __name__ == "__main__":
    main()
