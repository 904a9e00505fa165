"""A large library served without models, for the service's scale tests: filled straight into the catalogue
(``scale_fixtures.fill``) and opened with an engine that extracts nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from scale_fixtures import fill

RARE = ("voice-0000042", "voice-0005000", "voice-0009998")
"""Voices tagged ``rare`` (a tag read from the tag index)."""


class NoModels:
    """The library's engine, without models: nothing here extracts; the built-in cohort's clips are embedded as
    unit vectors drawn from their bytes' hash (as in benchmarks/scale.py)."""

    def weights_fingerprint(self, variant: str = "english") -> str:
        return "fp"

    def embed(self, sources: Any, *, variant: str = "english") -> np.ndarray:
        out = []
        for src in sources:
            v = np.random.default_rng(int(hashlib.sha256(bytes(src)).hexdigest()[:8], 16)).standard_normal(256)
            out.append(v / np.linalg.norm(v))
        return np.stack(out).astype(np.float32)

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"the scale tests run no model ({name})")


def filled_app(root: Path, n: int) -> Any:
    """The service's app over a new library of ``n`` embedding-mode voices (every fifth tagged ``narrator``, those
    of :data:`RARE` also ``rare``), without models."""
    from voicebank.library import Library
    from voicebank.service import ServiceSettings, create_app

    store = fill(root, n)
    with store.catalogue.write() as conn:
        conn.executemany("INSERT INTO tags (voice_id, tag) SELECT id, 'rare' FROM voices WHERE name = ?",
                         [(name,) for name in RARE])
    store.close()
    library = Library(root, engine=NoModels())  # type: ignore[arg-type]
    return create_app(ServiceSettings(library=root, log_json=False), library=library)
