"""Comparing voices: duplicate warnings, ``compare``, ``search`` and the experimental ``blend``.

Scores are cohort-normalised (:class:`~voicebank.similarity.ScoreNormaliser`, AS-norm) by the library's
:class:`~.scoring.Scoring`: the cohort is the library's own voices topped up with the built-in LibriSpeech cohort
(:mod:`voicebank.cohort`), and each stored voice's statistics are kept with it.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..audio.clip import Clip
from ..audio.decode import AudioSource
from ..duplicates import duplicate_cosine, duplicate_threshold
from ..errors import InvalidOptionError, LibraryError, VoiceNotFoundError
from ..similarity import (
    DUPLICATE_COSINE,
    DUPLICATE_THRESHOLD,
    SAME_RECORDING_COSINE,
    ScoreNormaliser,
    cosine,
)
from ..similarity import blend as blend_vectors
from ..store.records import NewVoice, VoiceInfo
from ..store.store import VoiceStore
from ..store.vectors import xvectors_by_name
from .computes import Computes
from .names import clean_tags
from .results import Comparison, Match
from .scoring import Scoring

log = logging.getLogger(__name__)


Similar = tuple[str, float, float]
"""A stored voice that may be the same speaker: ``(name, score, speaker_cosine)``."""
MAX_SIMILAR = 5
"""At most this many possible duplicates are reported for one voice."""


# --- duplicates ----------------------------------------------------------------------------------------


def find_similar(scoring: Scoring, engine: Computes | None, speaker_emb: np.ndarray | None, variant: str, *,
                 duplicate_threshold: float = DUPLICATE_THRESHOLD, exclude: str = "",
                 ) -> tuple[list[Similar], tuple[float, float, int] | None]:
    """Stored voices that may be the same speaker as ``speaker_emb`` (256,): ``(name, score, speaker_cosine)``,
    best first, at most :data:`MAX_SIMILAR`; and the embedding's statistics to store with it
    (:func:`statistics_of`).

    A voice is listed when its normalised score (:class:`~.scoring.Scoring`) reaches :func:`warn_at`: the
    single-comparison ``duplicate_threshold`` (raw cosine :data:`~voicebank.similarity.DUPLICATE_COSINE` when
    there is no cohort) raised for the number of voices compared, so that a warning names a different speaker
    on at most 5 % of adds at any library size; or its raw cosine
    :data:`~voicebank.similarity.SAME_RECORDING_COSINE` (the same recording, whatever the encoder).  Stores
    what the scoring computes (this is a write path).
    """
    if speaker_emb is None:
        return [], None
    scoring.index.refresh()
    if not len(scoring.index) or (len(scoring.index) == 1 and exclude):
        return [], None  # nothing to compare with: no cohort is embedded for the first voice
    norm = scoring.normaliser(engine, variant, duplicate_threshold=duplicate_threshold, store_results=True)
    stats = _query_stats(norm, speaker_emb)
    compared = len(scoring.index) - (1 if exclude else 0)
    ranked = scoring.index.rank(speaker_emb, k=MAX_SIMILAR, query_stats=stats, exclude=exclude,
                                at_least=warn_at(norm, compared), also_if_cosine=SAME_RECORDING_COSINE)
    similar = [(n, float(a), float(c)) for n, a, c in zip(ranked.names, ranked.scores, ranked.cosines, strict=True)]
    return similar, statistics_of(norm, speaker_emb, scoring.cohort_id, stats=stats)


def warn_at(norm: ScoreNormaliser | None, voices: int) -> float:
    """The score at or above which a new voice compared with ``voices`` stored ones is warned about: the
    normaliser's single-comparison ``duplicate_threshold`` raised by
    :func:`~voicebank.duplicates.duplicate_threshold` (``None``: no cohort, so raw cosine,
    :func:`~voicebank.duplicates.duplicate_cosine`)."""
    if norm is None:
        return duplicate_cosine(voices)
    return duplicate_threshold(voices, base=norm.duplicate_threshold)


def statistics_of(norm: ScoreNormaliser | None, speaker_emb: np.ndarray | None, cohort_id: int | None, *,
                  stats: tuple[float, float] | None = None) -> tuple[float, float, int] | None:
    """``(mean, std, cohort id)`` of a new voice's speaker embedding, to store with it (``None``: nothing to
    store: no embedding, no cohort, or a cohort that lives in memory only); ``stats``: its ``(mean, std)`` when
    already computed."""
    if norm is None or speaker_emb is None or cohort_id is None or cohort_id < 0:
        return None
    mean, std = stats or _query_stats(norm, speaker_emb) or (0.0, 1.0)
    return float(mean), float(std), int(cohort_id)


def _query_stats(norm: ScoreNormaliser | None, x: np.ndarray) -> tuple[float, float] | None:
    if norm is None:
        return None
    mean, std = norm.statistics(np.asarray(x)[None, :])
    return float(mean[0]), float(std[0])


def similar_warnings(similar: Sequence[Similar]) -> list[str]:
    """One warning naming the closest stored voice (and how many more reach the threshold)."""
    if not similar:
        return []
    (other, score, cos), more = similar[0], len(similar) - 1
    also = f"; {more} more" if more else ""
    return [f"sounds like {other!r} (score {score:.2f}, speaker cosine {cos:.3f}{also}): the same speaker "
            "under another name?"]


# --- compare and search --------------------------------------------------------------------------------


def vectors_of(store: VoiceStore, engine: Computes | None, item: str | AudioSource, variant: str, *,
               names_only: bool = False) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """``(label, speaker_emb, xvector)`` of a voice name or an audio source (a name is looked up first; with
    ``names_only`` a string is only ever a voice name, never read as a file path)."""
    if isinstance(item, str):
        with contextlib.suppress(VoiceNotFoundError):
            v = store.voice(item, suggest=False)
            return v.info.name, v.speaker_emb, v.xvector
        if names_only:
            store.voice(item)  # raises VoiceNotFoundError with suggestions
        if not Path(item).exists():
            close = difflib.get_close_matches(item, store.names(), n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise VoiceNotFoundError(f"{item!r} is neither a voice in the library at {store.path}{hint} nor an "
                                     "audio file; pass a voice name or a path to a clip")
    clip = Clip.read(item)
    if engine is None:
        raise LibraryError(f"{clip.name}: comparing audio needs the voice encoder: pass weights to the library")
    speaker, xvector = engine.embeddings(clip, variant)
    return clip.name, speaker, xvector


def compare(store: VoiceStore, scoring: Scoring, engine: Computes | None, a: str | AudioSource,
            b: str | AudioSource, *, variant: str = "english", duplicate_threshold: float = DUPLICATE_THRESHOLD,
            names_only: bool = False) -> Comparison:
    """Similarity of two voices or clips: the normalised score (against the library's cohort, see
    :class:`~.scoring.Scoring`) with the raw speaker and x-vector cosines beside it.

    Two VC voices (no speaker embedding) get no score; their x-vector cosine is reported on both cosines.
    """
    la, sa, xa = vectors_of(store, engine, a, variant, names_only=names_only)
    lb, sb, xb = vectors_of(store, engine, b, variant, names_only=names_only)
    if sa is None or sb is None:
        if xa is None or xb is None:
            raise LibraryError(f"cannot compare {la!r} and {lb!r}: an embedding is missing")
        cos = cosine(xa, xb)
        return Comparison(la, lb, cos, cos, DUPLICATE_COSINE)
    xcos = cosine(xa, xb) if xa is not None and xb is not None else None
    norm = scoring.normaliser(engine, variant, duplicate_threshold=duplicate_threshold)
    if norm is None:
        return Comparison(la, lb, cosine(sa, sb), xcos, DUPLICATE_COSINE)
    return Comparison(la, lb, cosine(sa, sb), xcos, norm.duplicate_threshold, norm.score(sa, sb))


def search(store: VoiceStore, scoring: Scoring, engine: Computes | None, query: str | AudioSource, *, k: int = 5,
           tag: str | None = None, variant: str = "english", duplicate_threshold: float = DUPLICATE_THRESHOLD,
           names_only: bool = False) -> list[Match]:
    """The ``k`` stored voices most similar to ``query`` (a voice name or a clip), best first, the query excluded.

    Ranked by the normalised score (:class:`~.scoring.Scoring`: each stored voice's statistics are kept with
    it, so a search is one matrix-vector product over the library's index); the raw speaker cosine and the
    x-vector cosine (which never enters the score) come with each match.  Voices without a speaker embedding
    (VC) are not ranked; a query without one raises :class:`~voicebank.errors.LibraryError`.
    """
    label, speaker, xvector = vectors_of(store, engine, query, variant, names_only=names_only)
    if speaker is None:
        raise LibraryError(f"{label!r} has no speaker embedding (a VC voice), so it cannot be searched with")
    k = max(0, int(k))
    if k == 0:
        return []
    norm = scoring.normaliser(engine, variant, duplicate_threshold=duplicate_threshold)
    ranked = scoring.index.rank(speaker, k=k, query_stats=_query_stats(norm, speaker), exclude=label, tag=tag)
    with store.catalogue.read() as conn:  # one read for the matches' x-vectors
        xvectors = xvectors_by_name(conn, ranked.names)
    out = []
    for name, score, cos in zip(ranked.names, ranked.scores, ranked.cosines, strict=True):
        if name not in xvectors:  # removed since the index last looked
            continue
        x = xvectors[name]
        out.append(Match(name, float(score), float(cos),
                         cosine(xvector, x) if xvector is not None and x is not None else None))
    return out


def blend(store: VoiceStore, names: Sequence[str], mix: Sequence[float] | None = None, *, name: str,
          base: str | None = None, tags: Iterable[str] = (), consent: str = "", added_by: str = "") -> VoiceInfo:
    """EXPERIMENTAL: a new embedding-only voice whose speaker embedding and x-vector are the ``mix``-weighted
    average of those of ``names`` (each L2-normalised first, the result re-normalised; the x-vector keeps the
    weighted mean norm of its inputs).  See :meth:`Library.blend <voicebank.Library.blend>`."""
    if len(names) < 2:
        raise InvalidOptionError("a blend needs at least two voices")
    w = [1.0] * len(names) if mix is None else [float(x) for x in mix]
    if len(w) != len(names):
        raise InvalidOptionError(f"{len(w)} mix weights for {len(names)} voices; give one weight per voice")
    if any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise InvalidOptionError(f"mix weights must be finite, non-negative and not all zero; got {w}")
    voices = [store.voice(n) for n in names]
    speakers, xvectors = [], []
    for v in voices:
        if v.speaker_emb is None or v.xvector is None:
            raise LibraryError(f"voice {v.info.name!r} has no speaker embedding to blend (a VC-only voice)")
        speakers.append(v.speaker_emb)
        xvectors.append(v.xvector)
    fps = {v.info.weights_fingerprint for v in voices if v.info.weights_fingerprint}
    if len(fps) > 1:
        raise LibraryError(f"voices {', '.join(repr(n) for n in names)} come from different weights; re-extract "
                           "the stale ones (`voicebank library reextract`) before blending")
    variants = {v.info.variant for v in voices}
    if len(variants) > 1:
        raise LibraryError(f"voices {', '.join(repr(n) for n in names)} are of different variants "
                           f"({', '.join(sorted(variants))}); blend voices of one variant")
    speaker = blend_vectors(speakers, w)
    xv = blend_vectors(xvectors, w)
    norm = sum(wi * float(np.linalg.norm(x)) for wi, x in zip(w, xvectors, strict=True)) / float(sum(w))
    xvector = (xv * np.float32(norm)).astype(np.float32)
    if base is None:
        for i in sorted(range(len(voices)), key=lambda i: -w[i]):
            if voices[i].info.mode != "embedding":
                base = voices[i].info.name
                break
    provenance = {"experimental": "embedding-space blend; not validated",
                  "blend": [[n, wi] for n, wi in zip(names, w, strict=True)]}
    json.dumps(provenance)  # plain data only
    info = store.insert(NewVoice(
        name=name, mode="embedding", variant=voices[0].info.variant, exaggeration=voices[0].info.exaggeration,
        speaker_emb=speaker, xvector=xvector, weights_fingerprint=next(iter(fps), ""), origin="blend",
        base=base, experimental=True, provenance=provenance, added_by=added_by, consent=consent,
        tags=tuple(sorted(set(clean_tags(tags)) | {"experimental"}))), label=name)
    log.warning("voice %r is an EXPERIMENTAL embedding-space blend of %s", name, ", ".join(names))
    return info


__all__ = ["MAX_SIMILAR", "Similar", "blend", "compare", "find_similar", "search", "similar_warnings",
           "statistics_of", "vectors_of", "warn_at"]
