"""Real speech with Resemblyzer's trained voice encoder: same-speaker pairs score above different-speaker pairs."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest

from voicebank.engine import Extractor
from voicebank.similarity import cosine_matrix, equal_error_rate

from audio_fixtures import REALSPEECH, resemblyzer_weights
from conftest import METRICS


def manifest() -> list[tuple[str, str]]:
    with (REALSPEECH / "MANIFEST.tsv").open() as f:
        return [(row["path"], row["speaker_id"]) for row in csv.DictReader(f, delimiter="\t")]


@pytest.fixture(scope="module")
def scores():
    weights = resemblyzer_weights()
    if weights is None:
        pytest.skip("resemblyzer (a test dependency) is not installed")
    rows = manifest()
    emb = Extractor(weights).embed([str(REALSPEECH / p) for p, _ in rows])
    sims = cosine_matrix(emb)
    genuine, impostor = [], []
    for (i, (_, si)), (j, (_, sj)) in itertools.combinations(enumerate(rows), 2):
        (genuine if si == sj else impostor).append(float(sims[i, j]))
    return np.array(genuine), np.array(impostor), len(rows), len({s for _, s in rows})


def test_same_speaker_pairs_score_clearly_above_different_speakers(scores):
    genuine, impostor, n_clips, n_speakers = scores
    assert genuine.size > 100 and impostor.size > 1000
    eer, threshold = equal_error_rate(genuine, impostor)
    METRICS["real-speech EER (Resemblyzer weights)"] = (
        f"{eer:.2%} at cosine {threshold:.3f}; {n_clips} clips, {n_speakers} speakers, "
        f"{genuine.size} same / {impostor.size} different pairs; mean cosine same {genuine.mean():.3f}, "
        f"different {impostor.mean():.3f}")
    assert genuine.mean() - impostor.mean() > 0.15
    assert np.median(genuine) > np.percentile(impostor, 95)
    assert eer < 0.10


def test_equal_error_rate_of_separable_and_overlapping_scores():
    assert equal_error_rate([0.9, 0.8, 0.95], [0.1, 0.2, 0.3])[0] == 0.0
    eer, _ = equal_error_rate(np.linspace(0, 1, 101), np.linspace(0, 1, 101))
    assert 0.4 < eer < 0.6
    with pytest.raises(ValueError):
        equal_error_rate([], [0.1])
