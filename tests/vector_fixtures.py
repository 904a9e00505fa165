"""Speaker embeddings written straight into a catalogue, for the index tests (no extraction)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from voicebank.library.index import unit_rows
from voicebank.store.store import VoiceStore, now, vec_bytes

REAL = Path(__file__).resolve().parent / "data" / "ann" / "embeddings.npy"


def fill_vectors(root: Path, vectors: np.ndarray, *, start: int = 0) -> VoiceStore:
    """Voices ``voice-<start + i>`` with these speaker embeddings, written straight into the catalogue."""
    store = VoiceStore(root)
    stamp = now()
    x192 = np.zeros(192, dtype=np.float32)
    with store.catalogue.write() as conn:
        conn.executemany(
            "INSERT INTO voices (name, mode, variant, exaggeration, source_sha256, duration, sample_rate, channels, "
            "speaker_emb, xvector, weights_fingerprint, added_at, inspection) "
            "VALUES (?, 'embedding', 'english', 0.5, ?, 5.0, 16000, 1, ?, ?, 'fp', ?, ?)",
            ((f"voice-{start + i:07d}", f"{start + i:064x}", vec_bytes(v.astype(np.float32)), vec_bytes(x192),
              stamp, json.dumps({})) for i, v in enumerate(vectors)))
    return store


def clustered(n: int, seed: int) -> np.ndarray:
    """Clustered unit rows: speakers at cosine ~0.5, ten rows each (for the tests that need no real speech)."""
    rng = np.random.default_rng(seed)
    speakers = unit_rows(1.0 + 0.06 * 16 * rng.standard_normal((n // 10 + 1, 256)))
    return unit_rows(np.repeat(speakers, 10, axis=0)[:n] + 0.03 * rng.standard_normal((n, 256)))
