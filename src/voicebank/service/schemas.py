"""Request and response bodies of the API (pydantic), shaped after OpenAI's voice objects where they exist."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..chatterbox import EXAGGERATION_MAX, EXAGGERATION_MIN
from ..library import VoiceInfo
from ..store.records import StorageMode

FormatName = Literal["safetensors", "pt"]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. voice_not_found.")
    message: str = Field(description="What went wrong and how to fix it.")
    param: str | None = Field(default=None, description="The request parameter at fault, if any.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class VoiceObject(BaseModel):
    """One stored voice (``id`` is its name)."""

    id: str
    name: str
    object: Literal["audio.voice"] = "audio.voice"
    created_at: int = Field(description="Unix time the voice was added.")
    mode: StorageMode
    variant: str
    variants: list[str]
    exaggeration: float | None
    duration: float | None
    sample_rate: int | None
    channels: int | None
    loudness_lufs: float | None
    tags: list[str]
    consent: str
    added_by: str
    base: str | None
    origin: str
    experimental: bool
    has_audio: bool
    size_bytes: int
    source_sha256: str | None
    weights_fingerprint: str
    inspection: dict[str, Any]


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceObject]
    has_more: bool
    next_after: str | None = Field(description="Pass as `after` for the next page (past last_id when the page "
                                   "stopped at its scan limit); null on the last page.")
    first_id: str | None
    last_id: str | None


class VoiceCount(BaseModel):
    object: Literal["audio.voice.count"] = "audio.voice.count"
    tag: str | None
    voices: int


class TagList(BaseModel):
    object: Literal["list"] = "list"
    data: list[str]
    has_more: bool


class SimilarVoice(BaseModel):
    id: str
    score: float = Field(description="Normalised similarity score (the raw cosine when no cohort is available).")
    speaker_cosine: float


class VoiceCreated(VoiceObject):
    warnings: list[str] = []
    similar: list[SimilarVoice] = []


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["audio.voice.deleted"] = "audio.voice.deleted"
    deleted: bool = True
    dependents: list[str] = Field(default=[], description="Embedding-only voices that used it as their base.")


class VoicePatch(BaseModel):
    """Fields to change; the ones left out stay as they are."""

    model_config = {"extra": "forbid"}

    name: str | None = Field(default=None, min_length=1, max_length=128, description="New name (rename).")
    tags: list[str] | None = Field(default=None, max_length=64, description="Replaces the tags.")
    consent: str | None = Field(default=None, max_length=2000)
    exaggeration: float | None = Field(default=None, ge=EXAGGERATION_MIN, le=EXAGGERATION_MAX, allow_inf_nan=False,
                                       description="Default exaggeration.")
    base: str | None = Field(default=None, min_length=1, max_length=128,
                             description="Base voice of an embedding-only voice.")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    id: str | None = None
    variant: str
    speaker_embedding: list[float] | None = Field(description="(256,) L2-normalised voice-encoder embedding.")
    xvector: list[float] | None = Field(description="(192,) CAM++ x-vector (S3Gen's speaker embedding).")
    duration: float | None = None


class Report(BaseModel):
    id: str
    object: Literal["audio.voice.report"] = "audio.voice.report"
    usable: bool | None
    inspection: dict[str, Any]


class CompareRequest(BaseModel):
    model_config = {"extra": "forbid"}

    a: str = Field(min_length=1, max_length=128, description="First voice.")
    b: str = Field(min_length=1, max_length=128, description="Second voice.")


class SearchRequest(BaseModel):
    """A search by name sent as JSON (the multipart form takes the same fields, or a clip)."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=128, description="A stored voice to search from.")
    k: int = Field(default=5, ge=1, le=100, description="How many voices.")
    tag: str | None = Field(default=None, max_length=128, description="Only voices with this tag.")


class ComparisonObject(BaseModel):
    object: Literal["audio.voice.comparison"] = "audio.voice.comparison"
    a: str
    b: str
    score: float | None = Field(description="Normalised similarity score of the speaker embeddings.")
    speaker_cosine: float
    xvector_cosine: float | None
    threshold: float
    same_speaker: bool


class MatchObject(BaseModel):
    id: str
    score: float = Field(description="Normalised similarity score (ranking); the raw cosines are beside it.")
    speaker_cosine: float
    xvector_cosine: float | None


class SearchResult(BaseModel):
    object: Literal["list"] = "list"
    query: str
    data: list[MatchObject]


class MapPoint(BaseModel):
    id: str
    x: float
    y: float
    tags: list[str]
    role: Literal["sample", "focus", "near"] = Field(
        description="A sampled voice, the voice asked about (`around`) or one of its nearest.")


class VoiceMap(BaseModel):
    object: Literal["audio.voice.map"] = "audio.voice.map"
    data: list[MapPoint]
    explained_variance: list[float] = Field(description="Of the sample, by each axis.")
    sampled: bool = Field(description="Whether voices were left out of the sample (the library holds more "
                          "than `cap` voices).")
    sample_size: int
    cap: int


class InspectionResult(BaseModel):
    object: Literal["audio.inspection"] = "audio.inspection"
    usable: bool
    inspection: dict[str, Any]


def _unix(added_at: str) -> int:
    try:
        return int(datetime.fromisoformat(added_at).timestamp())
    except ValueError:
        return 0


def voice_object(info: VoiceInfo) -> dict[str, Any]:
    """The API's view of a voice: no server paths."""
    return {
        "id": info.name, "name": info.name, "object": "audio.voice", "created_at": _unix(info.added_at),
        "mode": info.mode, "variant": info.variant, "variants": list(info.variants),
        "exaggeration": info.exaggeration, "duration": info.duration, "sample_rate": info.sample_rate,
        "channels": info.channels, "loudness_lufs": info.loudness_lufs, "tags": list(info.tags),
        "consent": info.consent, "added_by": info.added_by, "base": info.base, "origin": info.origin,
        "experimental": info.experimental, "has_audio": info.has_audio, "size_bytes": info.size,
        "source_sha256": info.source_sha256, "weights_fingerprint": info.weights_fingerprint,
        "inspection": info.inspection,
    }
