"""Small synthetic and real audio helpers for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
GOLDEN_INPUTS = DATA / "golden" / "inputs"
REALSPEECH = DATA / "realspeech"


def speechlike(seconds: float, sr: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A deterministic voiced-ish signal (harmonics with a moving pitch, amplitude envelope, a little noise).

    Returns float32 of shape (n,) or (n, channels), peak about 0.5.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    sig = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 + np.sin(2 * np.pi * 3.1 * t)) ** 2 / 4
    out = (sig * env * 0.4 + 0.003 * rng.standard_normal(n)).astype(np.float32)
    out /= max(1e-9, float(np.abs(out).max())) * 2
    if channels == 1:
        return out
    cols = [np.roll(out, 37 * c) * (1 - 0.2 * c) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def resemblyzer_weights() -> Path | None:
    """Path of Resemblyzer's trained ``pretrained.pt`` (without importing resemblyzer), or ``None``."""
    import importlib.util

    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    return path if path.is_file() else None
