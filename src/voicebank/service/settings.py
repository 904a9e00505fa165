"""Settings of the voice service (one frozen pydantic model; ``voicebank serve`` fills it from its options)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..store.pgcatalogue import is_postgres_url as is_shared_location

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
"""Hosts that only this machine can reach: the only ones the service binds to while no API key exists."""


class ServiceSettings(BaseModel):
    """How the service runs.  Every limit has a unit in its name; every field can be set on ``voicebank serve``."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)

    library: Path | str | None = None
    """Voice library directory (default ``$VOICEBANK_LIBRARY``, else the user data directory), or a shared
    library's catalogue, ``postgresql://user@host:port/db`` (see ``docs/shared-store.md``)."""
    blobs: str | None = None
    """A shared library's content files, ``s3://bucket/prefix`` (default ``$VOICEBANK_BLOBS``)."""
    weights: Path | None = None
    """Directory with the Chatterbox checkpoints (default ``$VOICEBANK_WEIGHTS``, then the Hugging Face cache)."""
    device: str = "cpu"
    """Torch device the extractors run on."""
    variants: tuple[str, ...] = ("english",)
    """Variants whose models are loaded at start-up (others load on first use)."""
    workers: int = Field(default=1, ge=1, le=64)
    """Extraction worker threads (each runs one extraction at a time)."""
    threads: int | None = Field(default=None, ge=1, le=1024)
    """Torch intra-op threads of the extractions (``None``: torch's setting is left alone; ``voicebank serve``
    defaults to the CPUs the process may use shared out between the workers)."""
    executor: Literal["local", "ray"] = "local"
    """Where extraction runs: ``local``, in ``workers`` threads of this process, which loads the models; ``ray``,
    on ``ray_workers`` actors of a Ray cluster that hold the models, while this process loads none."""
    ray_address: str | None = None
    """The Ray cluster of ``executor="ray"``: ``HOST:PORT`` of its head node or ``auto`` (``None``: start a
    local one on this machine)."""
    ray_workers: int = Field(default=1, ge=1, le=1024)
    """Ray actors holding the models (each runs one extraction at a time)."""
    ray_gpus: float = Field(default=0.0, ge=0, le=64)
    """GPUs each Ray actor reserves (with ``device="cuda"``)."""
    queue_size: int = Field(default=8, ge=0, le=10_000)
    """Extractions that may wait for a worker; beyond that uploads are answered 429 with ``Retry-After``."""
    cache_mb: float = Field(default=256.0, ge=0, le=1 << 20)
    """Byte budget of the in-memory cache of ready conditionals files (MiB)."""
    max_upload_mb: float = Field(default=25.0, gt=0, le=1 << 20)
    """Largest request body accepted (MiB), enforced while the body streams in: 413 at the limit."""
    max_audio_seconds: float = Field(default=300.0, gt=0, le=86_400)
    """Longest reference clip accepted (seconds), read from the file header before decoding: 413 beyond it."""
    body_timeout_s: float = Field(default=30.0, gt=0, le=3_600)
    """Longest wait for the next piece of a request body (a stalled upload is answered 408 and dropped)."""
    keys_file: Path | None = None
    """API keys file (default: ``service-keys.json`` in the library directory; for a shared library, a table in
    its catalogue, which every replica reads)."""
    require_keys: bool = False
    """Ask for an API key even while the keys file is empty (``voicebank serve`` sets it off loopback)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed by CORS; empty (the default) turns CORS off."""
    page: bool = True
    """Serve the web page at ``/``."""
    log_json: bool = True
    """Structured JSON logs (one object per line) with a request id."""
    default_page_size: int = Field(default=100, ge=1, le=1000)
    """Voices per page of ``GET /v1/audio/voices`` when ``limit`` is not given."""

    @field_validator("library", mode="before")
    @classmethod
    def _location(cls, value: object) -> object:
        """A ``postgresql://`` URL stays a string; anything else is a directory."""
        if isinstance(value, str) and not is_shared_location(value):
            return Path(value)
        return value

    @property
    def shared(self) -> bool:
        """Whether the library is a shared one (a ``postgresql://`` catalogue)."""
        return is_shared_location(self.library)
