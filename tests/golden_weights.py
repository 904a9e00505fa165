"""Deterministic random weights of the exact upstream layout (recipe of shared/golden/README.md).

The golden outputs in ``tests/data/golden`` were computed by upstream Chatterbox with exactly these
tensors; ``tests/data/golden/weights.sha256`` proves a re-generation equal.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

SEED = "golden-v1"
DATA = Path(__file__).parent / "data" / "golden"


def generate_tensor(name: str, shape: list[int], dtype: str, seed: str = SEED) -> np.ndarray:
    """One tensor of the recipe, as a C-ordered numpy array of ``dtype``."""
    n = math.prod(shape)
    if dtype.startswith("int"):
        return np.zeros(shape, dtype=np.int64)
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    bits = np.random.PCG64(int.from_bytes(digest[:8], "little")).random_raw(n)
    u = (np.asarray(bits, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    if name.endswith("running_var"):
        x = 1 + 0.2 * (u - 0.5)
    elif len(shape) >= 2:
        if name == "lstm.weight_ih_l0":
            gain = 30.0
        elif name.startswith("lstm.weight_"):
            gain = 2.0
        elif name.startswith("speaker_encoder."):
            gain = 1.7
        else:
            gain = 1.0
        x = (2 * u - 1) * gain / math.sqrt(math.prod(shape[1:]))
    elif len(shape) == 1 and name.endswith("weight"):
        x = 1 + 0.2 * (u - 0.5)
    else:
        x = 0.2 * (u - 0.5)
    return x.astype(np.float32).reshape(shape)


def keys() -> dict[str, list[tuple[str, list[int], str]]]:
    raw = json.loads((DATA / "keys.json").read_text())
    return {group: [(k, list(s), d) for k, s, d in items] for group, items in raw.items()}


def expected_sha256() -> dict[str, str]:
    out = {}
    for line in (DATA / "weights.sha256").read_text().splitlines():
        digest, name = line.split()
        out[name] = digest
    return out


def write_golden_weights(directory: Path) -> Path:
    """Write ``ve.safetensors`` and ``s3gen.safetensors`` (tokenizer + speaker encoder) into ``directory``."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    groups = keys()
    ve = {name: generate_tensor(name, shape, dt) for name, shape, dt in groups["ve"]}
    s3 = {
        name: generate_tensor(name, shape, dt)
        for group in ("s3gen_tokenizer", "s3gen_speaker_encoder")
        for name, shape, dt in groups[group]
    }
    save_file(ve, str(directory / "ve.safetensors"))
    save_file(s3, str(directory / "s3gen.safetensors"))
    return directory
