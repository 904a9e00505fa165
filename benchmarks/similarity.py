"""Similarity that means something: raw speaker cosine against the cohort-normalised score, on real speech.

With Resemblyzer's trained voice encoder (``resemblyzer/pretrained.pt``, the architecture of Chatterbox's) the
clips of a real-speech set (default ``tests/data/realspeech``; ``--clips DIR`` for another directory with a
``MANIFEST.tsv`` of ``path`` and ``speaker_id`` columns) are embedded once, then:

* **EER**: equal error rate over every pair of clips, for the raw cosine and for the normalised score (AS-norm)
  with the built-in cohort alone and with the library cohort (all clips stored, topped up with built-in ones);
* **duplicate warning**: the clips are added one by one in fixed orders (``--orders`` seeded shuffles) as
  ``Library.add`` does: a clip is warned about when a stored voice scores at or above the threshold, and the
  warning names the best-scoring one.  *False warnings*: the fraction of all clips whose warning names a
  different speaker; *catch rate*: among clips whose speaker is already stored, the fraction whose warning
  names a clip of that speaker.  The table gives the mean over the orders and the worst order.

Clips of speakers in the built-in cohort are left out, so the cohort never contains an evaluated speaker.
Prints a Markdown table.

    python benchmarks/similarity.py [--clips DIR] [--weights pretrained.pt] [--orders 12] [--threshold 4.5]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import _common as C  # noqa: E402

from voicebank.cohort import (  # noqa: E402
    MIN_LIBRARY_COHORT,
    builtin_cohort_embeddings,
    builtin_cohort_files,
    library_normaliser,
)
from voicebank.similarity import (  # noqa: E402
    DEFAULT_TOP_K,
    DUPLICATE_THRESHOLD,
    SAME_RECORDING_COSINE,
    ScoreNormaliser,
    cosine_matrix,
    equal_error_rate,
    impostor_ceiling,
)

REALSPEECH = REPO / "tests" / "data" / "realspeech"
RAW_THRESHOLD = 0.80
"""The duplicate threshold on raw cosine that voicebank used before normalised scores."""


@dataclass(frozen=True)
class Clips:
    """An evaluation set: ``paths`` (n,), ``speakers`` (n,), and the clips left out as cohort speakers."""

    paths: list[Path]
    speakers: list[str]
    left_out: int


@dataclass(frozen=True)
class Warnings:
    """Outcome of adding every clip in order: false warnings / all clips, caught / re-added speakers."""

    false_rate: float
    n_false: int
    catch_rate: float
    n_caught: int
    n_readded: int


def builtin_speakers() -> set[str]:
    """LibriSpeech speaker ids of the built-in cohort (its file names are utterance ids)."""
    return {f.name.split("-", 1)[0] for f in builtin_cohort_files()}


def read_clips(root: Path) -> Clips:
    """The clips of ``root/MANIFEST.tsv``, less those of built-in cohort speakers."""
    rows = [(r["path"], r["speaker_id"]) for r in C.read_manifest(root)]
    cohort = {f"librispeech-{s}" for s in builtin_speakers()}
    kept = [(root / p, s) for p, s in rows if s not in cohort]
    return Clips([p for p, _ in kept], [s for _, s in kept], len(rows) - len(kept))


def pair_eer(scores: np.ndarray, speakers: list[str]) -> float:
    """EER over every unordered pair of an (n, n) score matrix."""
    genuine: list[float] = []
    impostor: list[float] = []
    for i, j in itertools.combinations(range(len(speakers)), 2):
        (genuine if speakers[i] == speakers[j] else impostor).append(scores[i, j])
    return equal_error_rate(genuine, impostor)[0]


def add_one_by_one(emb: np.ndarray, speakers: list[str], order: np.ndarray, builtin: np.ndarray | None,
                   threshold: float) -> Warnings:
    """Duplicate warnings when the clips are added in ``order``: raw cosine when ``builtin`` is None, else the
    library's normalised score (the cohort re-chosen from the voices stored so far, as the library does)."""
    n_false = n_caught = n_readded = 0
    for step, i in enumerate(order):
        stored = order[:step]
        if stored.size == 0:
            continue
        cos = cosine_matrix(emb[i][None, :], emb[stored])[0]
        scores = cos if builtin is None else library_normaliser(emb[stored], builtin).scores(emb[i], emb[stored])
        best = int(np.argmax(scores))
        readded = speakers[i] in {speakers[j] for j in stored}
        n_readded += readded
        if scores[best] >= threshold or cos[best] >= SAME_RECORDING_COSINE:
            same = speakers[stored[best]] == speakers[i]
            n_false += not same
            n_caught += readded and same
    return Warnings(n_false / len(order), n_false, n_caught / max(n_readded, 1), n_caught, n_readded)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=Path, default=REALSPEECH,
                   help="directory with MANIFEST.tsv (path, speaker_id) and the clips (default: tests/data/realspeech)")
    p.add_argument("--weights", type=Path, help="voice-encoder weights (default: Resemblyzer's pretrained.pt)")
    p.add_argument("--orders", type=int, default=12, help="how many orders of adding to average (seeds 0, 1, ...)")
    p.add_argument("--threshold", type=float, default=DUPLICATE_THRESHOLD, help="normalised duplicate threshold")
    args = p.parse_args(argv)

    import torch

    from voicebank.engine import Extractor

    torch.set_num_threads(min(2, torch.get_num_threads()))
    weights = args.weights or C.resemblyzer_weights()
    clips = read_clips(args.clips)
    extractor = Extractor(weights)
    emb = extractor.embed([str(c) for c in clips.paths])
    fingerprint = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    builtin = builtin_cohort_embeddings(extractor.embed, fingerprint)
    speakers = clips.speakers

    raw = cosine_matrix(emb)
    eer_raw = pair_eer(raw, speakers)
    eer_builtin = pair_eer(ScoreNormaliser(builtin, exclude_above=impostor_ceiling(builtin)).pairwise(emb), speakers)
    eer_library = pair_eer(library_normaliser(emb, builtin).pairwise(emb), speakers)

    orders = [np.random.default_rng(seed).permutation(len(speakers)) for seed in range(max(1, args.orders))]
    warn_raw = [add_one_by_one(emb, speakers, o, None, RAW_THRESHOLD) for o in orders]
    warn_norm = [add_one_by_one(emb, speakers, o, builtin, args.threshold) for o in orders]

    n_spk = len(set(speakers))
    print(f"{len(speakers)} clips of {n_spk} speakers from {args.clips} ({clips.left_out} clips of built-in cohort "
          f"speakers left out); weights {weights.name}; built-in cohort {len(builtin)} voices, top_k "
          f"{DEFAULT_TOP_K}, library cohort from {MIN_LIBRARY_COHORT} voices; {len(orders)} orders of adding\n")
    print("| score | EER | duplicate threshold | false warnings: mean (worst order) "
          "| re-added speakers caught: mean (worst order) |")
    print("|---|---|---|---|---|")

    def row(name: str, eer: str, thr: str, ws: list[Warnings] | None) -> None:
        warn = "— | —"
        if ws:
            false = [w.false_rate for w in ws]
            catch = [w.catch_rate for w in ws]
            warn = (f"{np.mean(false):.1%} ({max(false):.1%}) | {np.mean(catch):.1%} ({min(catch):.1%})")
        print(f"| {name} | {eer} | {thr} | {warn} |")

    row("raw speaker cosine", f"{eer_raw:.2%}", f"{RAW_THRESHOLD:.2f}", warn_raw)
    row("normalised, built-in cohort", f"{eer_builtin:.2%}", "—", None)
    row("normalised, library cohort", f"{eer_library:.2%}", f"{args.threshold:g}", warn_norm)


if __name__ == "__main__":
    main()
