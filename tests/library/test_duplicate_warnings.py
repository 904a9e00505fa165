"""The add check at library size: among 3,000 voices of other speakers a new speaker gets no warning (the old fixed
raw-cosine threshold would have named one), while a re-added speaker is still named."""

from __future__ import annotations

import json

import numpy as np

from voicebank import errors
from voicebank.duplicates import duplicate_cosine
from voicebank.library import Library
from voicebank.similarity import cosine_matrix, normalise
from voicebank.store.store import VoiceStore, now, vec_bytes

from faults import FakeEngine

N, DIM = 3_000, 256


class NoWeightsEngine(FakeEngine):
    """No weights: scores are raw cosines (the fallback path of the duplicate check)."""

    def weights_fingerprint(self, variant: str = "english") -> str:
        raise errors.WeightsNotFoundError("no weights here")


def speakers(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors whose pairwise cosines spread like real different speakers' (mean ~0.55, a long upper tail):
    a shared direction plus 25 random ones."""
    common = np.zeros(DIM)
    common[0] = 1.1
    noise = np.zeros((n, DIM))
    noise[:, 1:26] = rng.standard_normal((n, 25)) / np.sqrt(25)
    return normalise(common + noise)


def test_a_new_speaker_among_many_gets_no_warning_and_a_re_added_one_does(tmp_path):
    rng = np.random.default_rng(7)
    stored, new = speakers(N, rng), speakers(1, rng)[0]
    store = VoiceStore(tmp_path)
    with store.catalogue.write() as conn:
        conn.executemany(
            "INSERT INTO voices (name, mode, variant, exaggeration, source_sha256, duration, sample_rate, channels, "
            "speaker_emb, xvector, weights_fingerprint, added_at, inspection) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?)",
            ((f"voice-{i:05d}", "embedding", "english", 0.5, f"{i:064x}", 5.0, 16000, 1, vec_bytes(v),
              vec_bytes(np.ones(192, np.float32)), "fp", now(), json.dumps({})) for i, v in enumerate(stored)))
    store.close()
    best = float(cosine_matrix(new[None, :], stored).max())
    assert 0.80 <= best < duplicate_cosine(N)  # the old fixed 0.80 would name a stranger; the check at N does not
    with Library(tmp_path, engine=NoWeightsEngine()) as lib:
        result = lib.import_embedding("stranger", new, np.ones(192, np.float32))
        assert result.status == "added" and not result.similar and not result.warnings
        again = normalise(stored[123] + 0.15 * rng.standard_normal(DIM) / np.sqrt(DIM))  # another clip of voice 123
        assert cosine_matrix(again[None, :], stored[123][None, :])[0, 0] < 0.999  # not a copy of the recording
        result = lib.import_embedding("voice-again", again, np.ones(192, np.float32))
        assert result.similar and result.similar[0][0] == "voice-00123" and "sounds like" in result.warnings[0]
