"""What the store holds about a voice: plain frozen dataclasses, JSON-ready through ``to_dict()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

StorageMode = Literal["audio", "conditionals", "embedding"]
STORAGE_MODES: tuple[StorageMode, ...] = ("audio", "conditionals", "embedding")


@dataclass(frozen=True)
class StoredFile:
    """One file a voice uses: ``role`` is ``audio``, ``conditionals`` or ``cache`` (conditionals extracted on
    demand); ``variant`` is ``""`` for audio."""

    role: str
    variant: str
    sha256: str
    size: int
    path: Path
    weights_fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


@dataclass(frozen=True)
class VoiceInfo:
    """What the library knows about one voice (no tensors: see :meth:`Library.get`)."""

    name: str
    mode: StorageMode
    variant: str
    """The variant its speaker embedding (and first conditionals) came from."""
    variants: tuple[str, ...]
    """Variants it has conditionals for (stored or cached), with ``variant`` first."""
    exaggeration: float | None
    source_sha256: str | None
    source_name: str
    duration: float | None
    sample_rate: int | None
    channels: int | None
    loudness_lufs: float | None
    weights_fingerprint: str
    base: str | None
    origin: str
    experimental: bool
    tags: tuple[str, ...]
    added_by: str
    added_at: str
    consent: str
    provenance: dict[str, Any]
    inspection: dict[str, Any]
    files: tuple[StoredFile, ...]

    @property
    def has_audio(self) -> bool:
        return any(f.role == "audio" for f in self.files)

    @property
    def size(self) -> int:
        """Bytes of the files it uses (shared files counted in full)."""
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["variants"], out["tags"] = list(self.variants), list(self.tags)
        out["files"] = [f.to_dict() for f in self.files]
        out["has_audio"] = self.has_audio
        return out


@dataclass(frozen=True)
class StoredVoice:
    """A voice's catalogue row: its id, what :class:`VoiceInfo` says, and its two vectors (``None`` if absent)."""

    id: int
    info: VoiceInfo
    speaker_emb: np.ndarray | None
    xvector: np.ndarray | None
    speaker_emb_malformed: bool = False
    xvector_malformed: bool = False


@dataclass(frozen=True)
class NewVoice:
    """Everything one insertion writes: the row, its tags and its files (bytes), committed together."""

    name: str
    mode: StorageMode
    variant: str
    exaggeration: float | None
    speaker_emb: np.ndarray | None
    xvector: np.ndarray | None
    weights_fingerprint: str
    origin: str = "audio"
    source_sha256: str | None = None
    source_name: str = ""
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    loudness_lufs: float | None = None
    base: str | None = None
    experimental: bool = False
    provenance: dict[str, Any] | None = None
    inspection: dict[str, Any] | None = None
    added_by: str = ""
    consent: str = ""
    tags: tuple[str, ...] = ()
    audio: bytes | None = None
    """The kept reference (a float WAV), or ``None``."""
    voice_files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """``variant -> (voice file bytes, weights fingerprint)`` stored as role ``conditionals``."""
    norms: tuple[float, float, int] | None = None
    """``(mean, std, cohort id)``: the speaker embedding's similarity statistics against a stored cohort."""



def now() -> str:
    """The current UTC time as the catalogue records it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def vec_bytes(x: np.ndarray | None) -> bytes | None:
    """A vector as the catalogue stores it: little-endian float32 bytes."""
    return None if x is None else np.ascontiguousarray(np.asarray(x, dtype="<f4").reshape(-1)).tobytes()


def vec(raw: bytes | None, dim: int) -> np.ndarray | None:
    """A stored vector of ``dim`` float32, or ``None`` when absent or malformed."""
    if not isinstance(raw, (bytes, bytearray, memoryview)) or len(raw) != 4 * dim:  # SQLite stores any type
        return None
    arr = np.frombuffer(raw, dtype="<f4")
    if not np.isfinite(arr).all():
        return None
    return arr.astype(np.float32)


__all__ = ["STORAGE_MODES", "NewVoice", "StorageMode", "StoredFile", "StoredVoice", "VoiceInfo", "now", "vec",
           "vec_bytes"]
