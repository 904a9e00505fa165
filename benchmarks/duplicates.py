"""Duplicate-speaker warnings at library sizes 10 to 10^6: the old fixed thresholds against the size-dependent
ones of :mod:`voicebank.duplicates`, on real speech.

The data is ``tests/data/duplicates``: real speech (LibriSpeech, VCTK, AISHELL-1) of 54 speakers cut into 5 s
uploads and embedded with Resemblyzer's trained voice encoder, split by speaker into a *choose* set (the
thresholds' impostor tails are fitted on it) and a *report* set (the rates below are measured on it).  Scores
of a set are those of adds into libraries drawn from it (:func:`pairs`), as the library computes them: the
cohort-normalised score against the library's cohort, and the raw cosine.  For each library size ``n``:

* *false*: the fraction of adds of a new speaker whose warning names a stored voice, ``1 - (1 - p) ** n`` with
  ``p`` the report set's fraction of different-speaker pairs at or above the threshold: counted while at least
  10 pairs are, else read from the exponential tail fitted to the report set (*extrapolated*: marked ``~``);
* *caught*: the fraction of re-added speakers (another utterance of a stored speaker) whose warning names
  their stored voice: the score reaches the threshold and none of the ``n - 1`` other voices outscores it;
* *best*: the caught rate with no threshold at all (the speaker's stored voice ranks first): no threshold, at
  any false-warning rate, catches more.

Prints Markdown tables.  ``embed`` rebuilds the data from a directory of clips with a ``MANIFEST.tsv`` (``path``,
``speaker_id``, ``license``), e.g. the full clips that ``tests/data/realspeech`` was cut from:

    python benchmarks/duplicates.py [--data tests/data/duplicates]
    python benchmarks/duplicates.py embed --audio DIR [--weights pretrained.pt] [--out tests/data/duplicates]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import _common as C  # noqa: E402

from voicebank.cohort import library_normaliser  # noqa: E402
from voicebank.duplicates import (  # noqa: E402
    COSINE_TAIL,
    SCORE_TAIL,
    caught_rate,
    duplicate_cosine,
    duplicate_threshold,
    exceedance,
    false_warning_rate,
    fit_tail,
)
from voicebank.similarity import cosine_matrix  # noqa: E402

DATA = REPO / "tests" / "data" / "duplicates"
SIZES = [10, 100, 1_000, 10_000, 100_000, 1_000_000]
OLD = {"score": 4.5, "cosine": 0.80}
"""The fixed thresholds voicebank used before (normalised score, raw cosine)."""
SEGMENT_S, LAST_MIN_S = 5.0, 3.0
"""Uploads are consecutive 5 s windows of each clip; a shorter last window is kept from 3 s."""
LIBRARY_SIZES = (5, 10, 20, 35, 49)
"""Sizes of the libraries drawn from a set (besides the whole set): small ones score against a cohort topped up
with the built-in voices, which changes the scores' spread."""
REPORT_MULTI = {"librispeech-1998", "librispeech-2033", "librispeech-367"}
"""Speakers with several utterances that go to the report set (the others go to the choose set)."""


@dataclass(frozen=True)
class Pairs:
    """Scores of every unordered pair of a set's voices: different speakers, the same speaker in another
    utterance, and the same speaker in another part of the same recording."""

    impostor: np.ndarray
    other_utterance: np.ndarray
    same_recording: np.ndarray


def load(data: Path) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray]:
    """``(manifest rows, embeddings (N, 256), built-in cohort embeddings (26, 256))``."""
    return C.read_manifest(data), np.load(data / "embeddings.npy"), np.load(data / "builtin.npy")


def pairs(rows: list[dict[str, str]], emb: np.ndarray, builtin: np.ndarray, which: str, *, draws: int = 60,
          seed: int = 0) -> dict[str, Pairs]:
    """``{"score": ..., "cosine": ...}`` scores of adds into libraries drawn from the set ``which`` (``choose``
    or ``report``), as the library scores them: for each size in :data:`LIBRARY_SIZES` (and the whole set less
    one), ``draws`` times, a random library of that many of its voices and a random other voice added to it,
    scored against the library's cohort (its voices topped up with the built-in cohort while under 50)."""
    keep = np.array([r["set"] == which for r in rows])
    speaker = np.array([r["speaker_id"] for r in rows])[keep]
    source = np.array([r["source"] for r in rows])[keep]
    e = emb[keep]
    rng = np.random.default_rng(seed)
    got: dict[str, list[list[np.ndarray]]] = {"score": [[], [], []], "cosine": [[], [], []]}
    for size in [*LIBRARY_SIZES, len(speaker) - 1]:
        for _ in range(draws):
            order = rng.permutation(len(speaker))
            stored, q = order[:size], order[size]
            kind = np.where(speaker[stored] != speaker[q], 0, np.where(source[stored] != source[q], 1, 2))
            scores = {"score": library_normaliser(e[stored], builtin).scores(e[q], e[stored]),
                      "cosine": cosine_matrix(e[q][None, :], e[stored])[0].astype(np.float64)}
            for name, s in scores.items():
                for k in range(3):
                    got[name][k].append(s[kind == k])
    return {name: Pairs(*(np.concatenate(parts) for parts in lists)) for name, lists in got.items()}


def table(p: Pairs, kind: str) -> list[str]:
    """Markdown rows: size, then old and new threshold with false and caught rates, and the best caught rate."""
    tail = fit_tail(p.impostor)
    new = duplicate_threshold if kind == "score" else duplicate_cosine
    out = ["| voices | old threshold | false | caught | new threshold | false | caught | caught (same recording) "
           "| best possible caught |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in SIZES:
        cells = [f"{n:,}"]
        for t in (OLD[kind], new(n)):
            pr = float(exceedance(p.impostor, t, tail))
            counted = int((p.impostor >= t).sum()) >= 10
            cells += [f"{t:.3f}", f"{'' if counted else '~'}{float(false_warning_rate(pr, n)):.1%}",
                      f"{caught_rate(p.other_utterance, p.impostor, n, t, tail):.0%}"]
        cells += [f"{caught_rate(p.same_recording, p.impostor, n, new(n), tail):.0%}",
                  f"{caught_rate(p.other_utterance, p.impostor, n, None, tail):.0%}"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def report(data: Path) -> None:
    rows, emb, builtin = load(data)
    for which in ("choose", "report"):
        kept = [r for r in rows if r["set"] == which]
        print(f"- {which} set: {len(kept)} uploads of {len({r['speaker_id'] for r in kept})} speakers")
    chosen = pairs(rows, emb, builtin, "choose")
    reported = pairs(rows, emb, builtin, "report")
    for kind, shipped in (("score", SCORE_TAIL), ("cosine", COSINE_TAIL)):
        fit = fit_tail(chosen[kind].impostor)
        name = "normalised score" if kind == "score" else "raw cosine"
        p = reported[kind]
        print(f"\n### {name}\n\nTail fitted on the choose set ({chosen[kind].impostor.size} impostor scores): start "
              f"{fit.start:.4f}, scale {fit.scale:.4f} (shipped: {shipped.start}, {shipped.scale}).  Report set: "
              f"{p.impostor.size} impostor scores, {p.other_utterance.size} same-speaker scores across utterances, "
              f"{p.same_recording.size} within one recording.\n")
        print("\n".join(table(p, kind)))


def split(speakers: list[str]) -> dict[str, str]:
    """``speaker -> set`` from one entry per clip: speakers with several clips go to the report set when in
    :data:`REPORT_MULTI`, else to the choose set; the others alternate, in order of corpus, then id."""
    counts = Counter(speakers)
    out = {s: ("report" if s in REPORT_MULTI else "choose") for s, k in counts.items() if k > 1}
    singles = sorted((s for s, k in counts.items() if k == 1), key=lambda s: (s.split("-")[0], s))
    out.update({s: ("report" if k % 2 else "choose") for k, s in enumerate(singles)})
    return out


def embed(audio: Path, out: Path, weights: Path) -> None:
    from voicebank.audio.clip import Clip
    from voicebank.cohort import builtin_cohort_embeddings
    from voicebank.engine import Extractor

    rows = C.read_manifest(audio)
    sets = split([r["speaker_id"] for r in rows])
    clips, manifest = [], []
    for r in rows:
        clip = Clip.read(audio / r["path"])
        sr, n = clip.sample_rate, clip.samples.shape[0]
        step = int(SEGMENT_S * sr)
        for start in range(0, n, step):
            seg = clip.samples[start:start + step]
            if seg.shape[0] < LAST_MIN_S * sr:
                continue
            clips.append(Clip.from_samples(seg, sr, name=f"{r['path']}@{start / sr:.1f}"))
            manifest.append({"row": str(len(manifest)), "set": sets[r["speaker_id"]], "speaker_id": r["speaker_id"],
                             "source": r["path"], "start_s": f"{start / sr:.3f}",
                             "end_s": f"{(start + seg.shape[0]) / sr:.3f}", "license": r["license"]})
    extractor = Extractor(weights)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", extractor.embed(clips).astype(np.float32))
    np.save(out / "builtin.npy", builtin_cohort_embeddings(extractor.embed, "resemblyzer").astype(np.float32))
    with (out / "MANIFEST.tsv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(manifest[0]), delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(manifest)
    print(f"{len(manifest)} uploads of {len({m['speaker_id'] for m in manifest})} speakers -> {out}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", nargs="?", choices=["report", "embed"], default="report")
    ap.add_argument("--data", type=Path, default=DATA, help="the embeddings and manifest to report on")
    ap.add_argument("--audio", type=Path, help="embed: a directory of clips with a MANIFEST.tsv")
    ap.add_argument("--out", type=Path, default=DATA, help="embed: where to write the data")
    ap.add_argument("--weights", type=Path, help="embed: voice-encoder weights (default Resemblyzer's)")
    args = ap.parse_args(argv)
    if args.command == "embed":
        if args.audio is None:
            ap.error("embed needs --audio DIR")
        embed(args.audio, args.out, args.weights or C.resemblyzer_weights())
    else:
        report(args.data)


if __name__ == "__main__":
    main()
