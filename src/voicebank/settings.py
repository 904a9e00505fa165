"""Settings: every environment variable and default voicebank reads, in one place.

Nothing else in the package reads the environment.  :meth:`Settings.from_env` takes a snapshot when
called (not at import), so a process that changes its environment gets what it set.

==============================  ================================================================
variable                        meaning
==============================  ================================================================
``VOICEBANK_WEIGHTS``           directory of Chatterbox checkpoints (or a voice-encoder file)
``VOICEBANK_LIBRARY``           the voice library directory, or a shared library's catalogue
                                (``postgresql://user@host:port/db``, see docs/shared-store.md)
``VOICEBANK_BLOBS``             a shared library's content files (``s3://bucket/prefix``; the object
                                store's credentials and endpoint are boto3's ``AWS_*`` variables)
``HF_HUB_CACHE``                Hugging Face hub cache (as ``huggingface_hub`` reads it; also the
                                older ``HUGGINGFACE_HUB_CACHE``, then ``HF_HOME/hub``, then
                                ``XDG_CACHE_HOME/huggingface/hub``, then ``~/.cache/huggingface/hub``)
``HF_HUB_OFFLINE``              ``1``: never download, even when downloads are allowed
``VOICEBANK_NO_PROGRESS``       ``1``: the CLI shows no progress bars
``VOICEBANK_API_KEY``           the key :class:`voicebank.Client` sends to a voicebank service
``VOICEBANK_SERVER``            the service ``voicebank pull`` downloads from when ``--server`` is not
                                given (a URL such as ``http://voices:8000``)
``VOICEBANK_CLIENT_CACHE``      where :class:`voicebank.Client` keeps downloaded voices
``VOICEBANK_CACHE_DIR``         voicebank's cache directory: weights fingerprints, and the client's
                                voices unless ``VOICEBANK_CLIENT_CACHE`` is set (default: the user cache
                                directory, e.g. ``~/.cache/voicebank``)
``VOICEBANK_ANN``               the approximate index (extra ``voicebank[ann]``): ``off`` (or ``0``):
                                every search exact; a number: used from that many voices on (an error
                                without the extra); unset: from 50,000 voices when the extra is installed
``VOICEBANK_TORCH``             ``0``: never import torch, even where it is installed (speaker embeddings
                                in numpy only; what needs torch says to install it)
``OMP_NUM_THREADS``             torch threads of a batch worker (Ray sets it per actor)
``PYTHONPATH``                  passed on to Ray workers, so they import the same voicebank
==============================  ================================================================
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

ENV_WEIGHTS = "VOICEBANK_WEIGHTS"
ENV_LIBRARY = "VOICEBANK_LIBRARY"
ENV_NO_PROGRESS = "VOICEBANK_NO_PROGRESS"
ENV_API_KEY = "VOICEBANK_API_KEY"
ENV_SERVER = "VOICEBANK_SERVER"
ENV_CLIENT_CACHE = "VOICEBANK_CLIENT_CACHE"
ENV_CACHE_DIR = "VOICEBANK_CACHE_DIR"
ENV_BLOBS = "VOICEBANK_BLOBS"
ENV_TORCH = "VOICEBANK_TORCH"
ENV_ANN = "VOICEBANK_ANN"

_TRUE = {"1", "true", "yes", "on"}


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def _hf_cache(env: Mapping[str, str]) -> Path:
    """The hub cache directory, resolved in the same order as ``huggingface_hub.constants``."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path(env.get("HOME") or Path.home()) / ".cache"
    return base / "huggingface" / "hub"


def _default_library(env: Mapping[str, str]) -> Path:
    if env.get(ENV_LIBRARY):
        return Path(env[ENV_LIBRARY]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("voicebank"))


def _ann_from(value: str | None) -> int | None:
    value = (value or "").strip().lower()
    if not value:
        return None
    if value in {"off", "no", "false", "exact"}:
        return 0
    try:
        return max(0, int(value.replace("_", "")))
    except ValueError:
        return None


@dataclass(frozen=True)
class Settings:
    """Where voicebank finds weights and the library, and how it may reach the Hugging Face hub."""

    weights: Path | None = None
    """Checkpoint directory (or voice-encoder file); ``None``: look in the Hugging Face cache."""
    library: Path | None = None
    """Voice library directory; ``None``: the platform's user data directory."""
    hf_cache: Path | None = None
    """The Hugging Face hub cache directory to read checkpoints from."""
    hf_offline: bool = False
    """Never download (``HF_HUB_OFFLINE=1``), whatever ``allow_download`` says."""
    progress: bool = True
    """Whether the CLI draws progress bars."""
    api_key: str | None = None
    """The service key :class:`voicebank.Client` sends when none is given."""
    server: str | None = None
    """The service URL ``voicebank pull`` uses when ``--server`` is not given."""
    client_cache: Path | None = None
    """Where :class:`voicebank.Client` keeps downloaded voices (``None``: the user cache directory)."""
    cache_dir: Path | None = None
    """voicebank's cache directory (weights fingerprints, the client's voices); ``None``: the user cache directory."""
    library_url: str | None = None
    """``VOICEBANK_LIBRARY`` when it names a shared library's catalogue (``postgresql://...``), as written."""
    blobs: str | None = None
    """A shared library's content files (``VOICEBANK_BLOBS``: ``s3://bucket/prefix``)."""
    omp_threads: int | None = None
    """``OMP_NUM_THREADS`` when set to a number (a batch worker's torch threads)."""
    pythonpath: str = ""
    """``PYTHONPATH`` (handed on to Ray workers)."""
    ann_from: int | None = None
    """``VOICEBANK_ANN``: the library size from which searches use the approximate index (0: never; ``None``:
    the default, when its extra is installed)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """A snapshot of the environment (``os.environ`` unless ``env`` is given)."""
        env = os.environ if env is None else env
        return cls(
            weights=Path(env[ENV_WEIGHTS]).expanduser() if env.get(ENV_WEIGHTS) else None,
            library=_default_library(env),
            hf_cache=_hf_cache(env),
            hf_offline=_flag(env.get("HF_HUB_OFFLINE")),
            progress=not _flag(env.get(ENV_NO_PROGRESS)),
            api_key=env.get(ENV_API_KEY) or None,
            server=env.get(ENV_SERVER) or None,
            client_cache=Path(env[ENV_CLIENT_CACHE]).expanduser() if env.get(ENV_CLIENT_CACHE) else None,
            cache_dir=Path(env[ENV_CACHE_DIR]).expanduser() if env.get(ENV_CACHE_DIR) else None,
            library_url=env[ENV_LIBRARY] if env.get(ENV_LIBRARY, "").startswith(("postgresql://", "postgres://"))
            else None,
            blobs=env.get(ENV_BLOBS) or None,
            omp_threads=int(env["OMP_NUM_THREADS"]) if env.get("OMP_NUM_THREADS", "").isdigit() else None,
            pythonpath=env.get("PYTHONPATH", ""),
            ann_from=_ann_from(env.get(ENV_ANN)),
        )

    def with_overrides(self, *, weights: str | os.PathLike[str] | None = None,
                       library: str | os.PathLike[str] | None = None) -> Settings:
        """These settings with an explicit weights path and/or library directory (``None`` keeps the value)."""
        out = self
        if weights is not None:
            out = replace(out, weights=Path(weights).expanduser())
        if library is not None:
            out = replace(out, library=Path(library).expanduser())
        return out

    @property
    def cache_path(self) -> Path:
        """The directory of voicebank's small caches (the user cache directory when unset)."""
        if self.cache_dir is not None:
            return self.cache_dir
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("voicebank"))

    @property
    def library_path(self) -> Path:
        """The library directory these settings name (the platform default when unset)."""
        return self.library if self.library is not None else _default_library({})


def torch_refused(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``VOICEBANK_TORCH`` asks never to import torch (read now, from ``env`` or the process)."""
    value = (os.environ if env is None else env).get(ENV_TORCH, "")
    return value.strip().lower() in ("0", "false", "no", "off")


@contextlib.contextmanager
def temporary_environment(**values: str) -> Iterator[None]:
    """Set environment variables of this process for the duration (processes started meanwhile inherit them),
    then put back what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


__all__ = ["ENV_API_KEY", "ENV_CLIENT_CACHE", "ENV_LIBRARY", "ENV_NO_PROGRESS", "ENV_SERVER", "ENV_WEIGHTS", "Settings",
           "temporary_environment"]
