"""Comparing voices: duplicate warnings, ``compare``, ``search`` and the experimental ``blend``.

Scores are cohort-normalised (:class:`~voicebank.similarity.ScoreNormaliser`, AS-norm): the cohort is the
library's own voices topped up with the built-in LibriSpeech cohort (:mod:`voicebank.cohort`), whose
embeddings are computed by the engine once per weights fingerprint and cached in the library's ``cache/``.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..audio.clip import Clip
from ..audio.decode import AudioSource
from ..cohort import builtin_cohort_embeddings, cached_builtin_cohort, library_normaliser
from ..errors import InvalidOptionError, LibraryError, VoicebankError, VoiceNotFoundError
from ..options import embedding_variant
from ..similarity import (
    DUPLICATE_COSINE,
    DUPLICATE_THRESHOLD,
    SAME_RECORDING_COSINE,
    ScoreNormaliser,
    cosine,
    cosine_matrix,
)
from ..similarity import blend as blend_vectors
from ..store.records import VoiceInfo
from ..store.store import NewVoice, VoiceStore
from .computes import Computes
from .names import clean_tags
from .results import Comparison, Match

log = logging.getLogger(__name__)


Similar = tuple[str, float, float]
"""A stored voice that may be the same speaker: ``(name, score, speaker_cosine)``."""
CohortMemo = dict[str, np.ndarray]
"""``weights fingerprint -> built-in cohort embeddings (26, 256)``, kept by the caller between calls."""


# --- normalised scores ---------------------------------------------------------------------------------


def normaliser(store: VoiceStore, engine: Computes | None, variant: str, known: Mapping[str, np.ndarray], *,
               duplicate_threshold: float = DUPLICATE_THRESHOLD, memo: CohortMemo | None = None,
               ) -> ScoreNormaliser | None:
    """The score normaliser of the library's voices ``known`` (name -> (256,)) for ``variant``'s voice encoder.

    The built-in cohort (:mod:`voicebank.cohort`) is embedded by ``engine.embed`` and cached in
    ``store.cache_dir`` per weights fingerprint (and in ``memo``, when given).  Without an engine or weights,
    the cache of the fingerprint most stored voices carry serves; with neither, ``None`` (logged): scores are
    then raw speaker cosines, compared with :data:`DUPLICATE_COSINE`.
    """
    v = embedding_variant(variant)
    builtin: np.ndarray | None = None
    reason = "the library has no engine"
    if engine is not None:
        try:
            fp = engine.weights_fingerprint(v)
            builtin = memo.get(fp) if memo is not None else None
            if builtin is None:
                eng = engine
                builtin = builtin_cohort_embeddings(lambda files: eng.embed(files, variant=v), fp, store.cache_dir)
                if memo is not None:
                    memo[fp] = builtin
        except VoicebankError as e:
            reason = str(e)
    if builtin is None:
        common = store.common_fingerprint()
        builtin = cached_builtin_cohort(common, store.cache_dir) if common is not None else None
    if builtin is None:
        log.warning("similarity scores are raw speaker cosines (threshold %.2f): no weights to embed the "
                    "built-in cohort with (%s)", DUPLICATE_COSINE, reason)
        return None
    library = (np.stack(list(known.values())) if known
               else np.zeros((0, builtin.shape[1]), dtype=np.float32))
    return library_normaliser(library, builtin, duplicate_threshold=duplicate_threshold)


def scores(query: np.ndarray, candidates: np.ndarray, norm: ScoreNormaliser | None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """``(score, speaker_cosine)`` of a (256,) query against (M, 256) candidates, each (M,) float64.

    The score is the normalised one, or the raw cosine when ``norm`` is ``None``.
    """
    cos = cosine_matrix(query[None, :], candidates)[0].astype(np.float64)
    return (norm.scores(query, candidates) if norm is not None else cos), cos


def similar_voices(speaker_emb: np.ndarray | None, known: Mapping[str, np.ndarray],
                   norm: ScoreNormaliser | None, *, exclude: str = "") -> list[Similar]:
    """Stored voices that may be the same speaker as ``speaker_emb`` (256,): ``(name, score, speaker_cosine)``,
    best first, at most 5.

    A voice is listed when its score reaches ``norm.duplicate_threshold`` (:data:`DUPLICATE_COSINE` on the
    raw cosine when ``norm`` is ``None``), or its raw cosine
    :data:`~voicebank.similarity.SAME_RECORDING_COSINE` (the same recording, whatever the encoder).
    """
    names = [n for n in known if n != exclude]
    if speaker_emb is None or not names:
        return []
    threshold = norm.duplicate_threshold if norm is not None else DUPLICATE_COSINE
    s, cos = scores(speaker_emb, np.stack([known[n] for n in names]), norm)
    hits = [(n, float(a), float(c)) for n, a, c in zip(names, s, cos, strict=True)
            if a >= threshold or c >= SAME_RECORDING_COSINE]
    return sorted(hits, key=lambda t: -t[1])[:5]


def find_similar(store: VoiceStore, engine: Computes | None, speaker_emb: np.ndarray | None,
                 known: Mapping[str, np.ndarray], variant: str, *, duplicate_threshold: float = DUPLICATE_THRESHOLD,
                 memo: CohortMemo | None = None, exclude: str = "") -> list[Similar]:
    """:func:`similar_voices` with the library's :func:`normaliser` (built only when there is something to
    compare: no cohort is embedded for the first voice or a voice without speaker embedding)."""
    if speaker_emb is None or not any(n != exclude for n in known):
        return []
    norm = normaliser(store, engine, variant, known, duplicate_threshold=duplicate_threshold, memo=memo)
    return similar_voices(speaker_emb, known, norm, exclude=exclude)


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
        if store.contains(item):
            v = store.voice(item)
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


def compare(store: VoiceStore, engine: Computes | None, a: str | AudioSource, b: str | AudioSource, *,
            variant: str = "english", duplicate_threshold: float = DUPLICATE_THRESHOLD,
            memo: CohortMemo | None = None, names_only: bool = False) -> Comparison:
    """Similarity of two voices or clips: the normalised score (against the library's cohort, see
    :func:`normaliser`) with the raw speaker and x-vector cosines beside it.

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
    norm = normaliser(store, engine, variant, store.speaker_embeddings(), duplicate_threshold=duplicate_threshold,
                      memo=memo)
    if norm is None:
        return Comparison(la, lb, cosine(sa, sb), xcos, DUPLICATE_COSINE)
    return Comparison(la, lb, cosine(sa, sb), xcos, norm.duplicate_threshold, norm.score(sa, sb))


def search(store: VoiceStore, engine: Computes | None, query: str | AudioSource, *, k: int = 5,
           tag: str | None = None, variant: str = "english", duplicate_threshold: float = DUPLICATE_THRESHOLD,
           memo: CohortMemo | None = None, names_only: bool = False) -> list[Match]:
    """The ``k`` stored voices most similar to ``query`` (a voice name or a clip), best first, the query excluded.

    Ranked by the normalised score (:func:`normaliser`); the raw speaker cosine and the x-vector cosine (which
    never enters the score) come with each match.  Voices without a speaker embedding (VC) are not ranked; a
    query without one raises :class:`~voicebank.errors.LibraryError`.
    """
    label, speaker, xvector = vectors_of(store, engine, query, variant, names_only=names_only)
    if speaker is None:
        raise LibraryError(f"{label!r} has no speaker embedding (a VC voice), so it cannot be searched with")
    cands = [(n, s, x) for n, s, x in store.vectors(tag=tag) if n != label and s is not None]
    if not cands:
        return []
    norm = normaliser(store, engine, variant, store.speaker_embeddings(), duplicate_threshold=duplicate_threshold,
                      memo=memo)
    s, cos = scores(speaker, np.stack([c[1] for c in cands]), norm)
    out = [Match(n, float(a), float(c), cosine(xvector, x) if xvector is not None and x is not None else None)
           for (n, _, x), a, c in zip(cands, s, cos, strict=True)]
    out.sort(key=lambda m: -m.score)
    return out[: max(0, int(k))]


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


__all__ = ["CohortMemo", "Similar", "blend", "compare", "find_similar", "normaliser", "scores",
           "search", "similar_voices", "similar_warnings", "vectors_of"]
