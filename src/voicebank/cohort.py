"""The cohort that similarity scores are normalised against (see :class:`voicebank.similarity.ScoreNormaliser`).

A cohort is a set of speaker embeddings of many different speakers.  A library with enough voices is its own
cohort; a small one is topped up with the **built-in cohort**: 26 short LibriSpeech clips of 26 speakers
(CC BY 4.0, attribution in ``voicebank/data/cohort/README.md``) shipped with the package.  Their embeddings
depend on the voice-encoder weights, so they are computed with the loaded weights on first use and cached in
a file per weights fingerprint.  Pure functions and numpy; the embedding itself is the caller's ``embed``
(``Extractor(weights).embed``), so this module never imports torch.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

from .fileio import atomic_write
from .similarity import DEFAULT_TOP_K, DUPLICATE_THRESHOLD, ScoreNormaliser, impostor_ceiling

log = logging.getLogger(__name__)

MIN_LIBRARY_COHORT = 50
"""A library with at least this many voices is its own cohort; a smaller one is topped up to this size with
built-in voices."""
MAX_LIBRARY_COHORT = 1000
"""At most this many library voices make the cohort (scoring a voice costs one cosine per cohort voice)."""
COHORT_MANIFEST = "MANIFEST.tsv"

Embed = Callable[[Sequence[bytes]], np.ndarray]
"""Speaker embeddings of encoded audio files: ``embed(files) -> (len(files), d)`` (``Extractor.embed``)."""


def _cohort_dir() -> Traversable:
    return resources.files("voicebank").joinpath("data", "cohort")


def builtin_cohort_files() -> list[Traversable]:
    """The built-in cohort's audio files (16 kHz FLAC), in manifest order."""
    root = _cohort_dir()
    lines = root.joinpath(COHORT_MANIFEST).read_text(encoding="utf-8").splitlines()
    return [root.joinpath(line.split("\t", 1)[0]) for line in lines[1:] if line.strip()]


def builtin_cohort_version() -> str:
    """A short hash of the built-in cohort's audio: it names the cache file, so new clips invalidate it."""
    h = hashlib.sha256()
    for f in builtin_cohort_files():
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:12]


def cohort_cache_path(cache_dir: str | Path, fingerprint: str) -> Path:
    """Where the built-in cohort's embeddings for weights ``fingerprint`` are cached under ``cache_dir``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", fingerprint)[:64] or "unknown"
    return Path(cache_dir) / f"cohort-{safe}-{builtin_cohort_version()}.npy"


def cached_builtin_cohort(fingerprint: str, cache_dir: str | Path) -> np.ndarray | None:
    """The built-in cohort's embeddings cached for weights ``fingerprint``: (26, d) float32, or ``None`` when
    there is no usable cache file (a damaged one is logged)."""
    path = cohort_cache_path(cache_dir, fingerprint)
    if not path.is_file():
        return None
    try:
        cached = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        log.warning("%s: cannot read the cached cohort (%s)", path, e)
        return None
    if cached.ndim != 2 or cached.shape[0] != len(builtin_cohort_files()) or not np.isfinite(cached).all():
        log.warning("%s: unexpected cached cohort of shape %s", path, cached.shape)
        return None
    return cached.astype(np.float32, copy=False)


def builtin_cohort_embeddings(embed: Embed, fingerprint: str, cache_dir: str | Path | None = None) -> np.ndarray:
    """Speaker embeddings of the built-in cohort: (26, d) float32, computed by ``embed`` or read from the cache.

    ``embed``: the loaded weights' embedding function (``Extractor(weights).embed``); ``fingerprint``: a string
    that changes whenever those weights do (``Extractor.weights_fingerprint``).  With ``cache_dir`` the result
    is kept in :func:`cohort_cache_path` and read from there next time (:func:`cached_builtin_cohort`); a cache
    file that cannot be read or written is recomputed or skipped with a logged warning, never an error.
    """
    files = builtin_cohort_files()
    path = cohort_cache_path(cache_dir, fingerprint) if cache_dir is not None else None
    if cache_dir is not None:
        cached = cached_builtin_cohort(fingerprint, cache_dir)
        if cached is not None:
            return cached
    log.info("embedding the built-in cohort (%d clips) for weights %s", len(files), fingerprint)
    emb = np.asarray(embed([f.read_bytes() for f in files]), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(files) or not np.isfinite(emb).all():
        raise ValueError(f"embedding the built-in cohort gave an array of shape {emb.shape} (or non-finite values) "
                         f"for {len(files)} clips")
    if path is not None:
        try:
            atomic_write(path, lambda f: np.save(f, emb))
        except OSError as e:
            log.warning("%s: cannot cache the built-in cohort (%s); it will be computed again next time", path, e)
    return emb


def select_cohort(library: np.ndarray, builtin: np.ndarray, *, min_size: int = MIN_LIBRARY_COHORT,
                  max_size: int = MAX_LIBRARY_COHORT) -> np.ndarray:
    """The cohort to normalise a library's scores with: (L, d) library voices, (B, d) built-in -> (N, d).

    The library's own voices when there are at least ``min_size`` of them (``max_size`` of them, evenly spaced
    in the given order, when there are more), else all of them followed by the first ``min_size - L``
    built-in voices (all of them when the library is smaller than ``min_size - B``).
    """
    lib = np.asarray(library, dtype=np.float32).reshape(-1, np.shape(builtin)[-1])
    bi = np.asarray(builtin, dtype=np.float32)
    n = lib.shape[0]
    if n > max_size:
        return lib[np.linspace(0, n - 1, max_size).round().astype(int)]
    if n >= min_size:
        return lib
    return np.concatenate([lib, bi[: max(0, min_size - n)]])


def library_normaliser(library: np.ndarray, builtin: np.ndarray, *, min_size: int = MIN_LIBRARY_COHORT,
                       max_size: int = MAX_LIBRARY_COHORT, top_k: int = DEFAULT_TOP_K,
                       duplicate_threshold: float = DUPLICATE_THRESHOLD) -> ScoreNormaliser:
    """The :class:`ScoreNormaliser` of a library: (L, d) stored voices' embeddings, (B, d) built-in cohort.

    Its cohort is :func:`select_cohort`; cohort entries that score at least :func:`impostor_ceiling` of the
    built-in cohort (the highest cosine between two of its distinct speakers) with a voice are left out of that
    voice's statistics, so a voice's own copy and its other clips in the library do not count as impostors.
    """
    return ScoreNormaliser(select_cohort(library, builtin, min_size=min_size, max_size=max_size), top_k=top_k,
                           exclude_above=impostor_ceiling(builtin), duplicate_threshold=duplicate_threshold)
