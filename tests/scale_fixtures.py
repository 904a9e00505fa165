"""Large libraries for size-independence tests, written straight into the catalogue, and a counter of the
catalogue's work (SQLite virtual-machine steps): tests compare counts on two sizes, never times."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from voicebank.store.store import VoiceStore, now, vec_bytes


def fill(root: Path, n: int) -> VoiceStore:
    """A library of ``n`` embedding-mode voices written straight into the catalogue (the store's own schema), with
    every fifth one tagged ``narrator``: building 10^5 through :meth:`VoiceStore.insert` would time the writer,
    not what is measured here."""
    store = VoiceStore(root)
    rng = np.random.default_rng(n)
    stamp = now()
    with store.catalogue.write() as conn:
        rows = ((f"voice-{i:07d}", "embedding", "english", 0.5, f"{i:064x}", 5.0, 16000, 1,
                 vec_bytes(rng.standard_normal(256).astype(np.float32)),
                 vec_bytes(rng.standard_normal(192).astype(np.float32)), "fp", stamp, json.dumps({}))
                for i in range(n))
        conn.executemany("INSERT INTO voices (name, mode, variant, exaggeration, source_sha256, duration, sample_rate, "
                         "channels, speaker_emb, xvector, weights_fingerprint, added_at, inspection) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("INSERT INTO tags (voice_id, tag) SELECT id, 'narrator' FROM voices WHERE id % 5 = 0")
    return store


@contextlib.contextmanager
def counting(store: VoiceStore) -> Iterator[Callable[[], int]]:
    """Counts the SQLite virtual-machine steps this thread's catalogue connection runs meanwhile."""
    steps = [0]

    def tick() -> int:
        steps[0] += 100
        return 0

    conn = store.catalogue.connection()
    conn.set_progress_handler(tick, 100)
    try:
        yield lambda: steps[0]
    finally:
        conn.set_progress_handler(None, 0)


__all__ = ["counting", "fill"]
