"""Comparing voices: duplicate warnings, ``compare``, ``search`` and the experimental ``blend``."""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..audio.clip import Clip
from ..audio.decode import AudioSource
from ..errors import LibraryError, VoiceNotFoundError
from ..similarity import blend as blend_vectors
from ..similarity import cosine, cosine_matrix
from ..store.records import VoiceInfo
from ..store.store import NewVoice, VoiceStore
from .ingest import Computes, clean_tags
from .results import Comparison, Match

log = logging.getLogger(__name__)

DUPLICATE_THRESHOLD = 0.80
"""Speaker-embedding cosine at or above which a new voice is reported as possibly the same speaker as a stored
one.  With a trained voice encoder same-speaker pairs of real speech score about 0.88 on average and different
speakers about 0.55 (equal error rate near 0.76: see ``tests/library/test_realspeech.py``)."""


def similar_voices(speaker_emb: np.ndarray | None, known: Mapping[str, np.ndarray], *,
                   threshold: float = DUPLICATE_THRESHOLD, exclude: str = "") -> list[tuple[str, float]]:
    """Stored voices whose speaker embedding is at least ``threshold`` close to ``speaker_emb`` (best 5 first)."""
    if speaker_emb is None or not known:
        return []
    names = [n for n in known if n != exclude]
    if not names:
        return []
    sims = cosine_matrix(speaker_emb[None, :], np.stack([known[n] for n in names]))[0]
    hits = [(n, float(s)) for n, s in zip(names, sims, strict=True) if s >= threshold]
    return sorted(hits, key=lambda t: -t[1])[:5]


def similar_warnings(similar: Sequence[tuple[str, float]], *, threshold: float = DUPLICATE_THRESHOLD) -> list[str]:
    """One warning naming the closest stored voice (and how many more are above the threshold)."""
    if not similar:
        return []
    (other, cos), more = similar[0], len(similar) - 1
    also = f"; {more} more above {threshold:.2f}" if more else ""
    return [f"sounds like {other!r} (speaker cosine {cos:.3f}{also}): the same speaker under another name?"]


def vectors_of(store: VoiceStore, engine: Computes | None, item: str | AudioSource, variant: str,
               ) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """``(label, speaker_emb, xvector)`` of a voice name or an audio source (a name is looked up first)."""
    if isinstance(item, str):
        if store.contains(item):
            v = store.voice(item)
            return v.info.name, v.speaker_emb, v.xvector
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
            variant: str = "english", threshold: float = DUPLICATE_THRESHOLD) -> Comparison:
    """Cosine similarity of two voices or clips."""
    la, sa, xa = vectors_of(store, engine, a, variant)
    lb, sb, xb = vectors_of(store, engine, b, variant)
    if sa is None or sb is None:
        if xa is None or xb is None:
            raise LibraryError(f"cannot compare {la!r} and {lb!r}: an embedding is missing")
        cos = cosine(xa, xb)
        return Comparison(la, lb, cos, cos, threshold)
    xcos = cosine(xa, xb) if xa is not None and xb is not None else None
    return Comparison(la, lb, cosine(sa, sb), xcos, threshold)


def search(store: VoiceStore, engine: Computes | None, query: str | AudioSource, *, k: int = 5,
           tag: str | None = None, variant: str = "english") -> list[Match]:
    """The ``k`` stored voices closest to ``query`` (a voice name or a clip), best first, the query excluded."""
    label, speaker, xvector = vectors_of(store, engine, query, variant)
    rows = [(n, s, x) for n, s, x in store.vectors(tag=tag) if n != label]
    use_speaker = speaker is not None
    q = speaker if use_speaker else xvector
    cands = [(n, s if use_speaker else x, x) for n, s, x in rows if (s if use_speaker else x) is not None]
    if not cands or q is None:
        return []
    sims = cosine_matrix(q[None, :], np.stack([c[1] for c in cands if c[1] is not None]))[0]
    out = []
    for (n, _, x), score in zip(cands, sims, strict=True):
        xs = cosine(xvector, x) if xvector is not None and x is not None else None
        out.append(Match(n, float(score), xs))
    out.sort(key=lambda m: -m.score)
    return out[: max(0, int(k))]


def blend(store: VoiceStore, names: Sequence[str], mix: Sequence[float] | None = None, *, name: str,
          base: str | None = None, tags: Iterable[str] = (), consent: str = "", added_by: str = "") -> VoiceInfo:
    """EXPERIMENTAL: a new embedding-only voice whose speaker embedding and x-vector are the ``mix``-weighted
    average of those of ``names`` (each L2-normalised first, the result re-normalised; the x-vector keeps the
    weighted mean norm of its inputs).  See :meth:`Library.blend <voicebank.Library.blend>`."""
    if len(names) < 2:
        raise ValueError("a blend needs at least two voices")
    w = [1.0] * len(names) if mix is None else [float(x) for x in mix]
    if len(w) != len(names):
        raise ValueError(f"{len(w)} mix weights for {len(names)} voices; give one weight per voice")
    if any(not np.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"mix weights must be finite, non-negative and not all zero; got {w}")
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


__all__ = ["DUPLICATE_THRESHOLD", "blend", "compare", "search", "similar_voices", "similar_warnings", "vectors_of"]
