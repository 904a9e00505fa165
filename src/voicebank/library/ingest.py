"""Adding voices, in two steps: :func:`prepare` computes, :func:`commit` stores.

``prepare(clip, options, engine) -> Prepared`` is a pure function: it reads no catalogue, writes nothing and
returns plain data (numpy arrays, voice-file bytes), so any executor can run it -- a thread, a process pool,
a Ray actor.  ``commit(store, prepared)`` runs where the one writer is, in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np

from ..audio.clip import Clip
from ..audio.decode import AudioSource, describe, wav_bytes
from ..audio.inspection import inspect_clip
from ..chatterbox import DEFAULT_EXAGGERATION, VARIANTS
from ..errors import (
    DuplicateAudioError,
    InvalidOptionError,
    InvalidVoiceNameError,
    ReferenceRejectedError,
    VoicebankError,
)
from ..options import check_exaggeration, check_variant, embedding_variant
from ..ordered import ordered_map
from ..progress import Progress
from ..store.records import STORAGE_MODES, NewVoice, StorageMode, VoiceInfo
from ..store.store import VoiceStore
from .bulk import Pending
from .computes import Computes
from .names import clean_tags, current_user, default_name
from .results import AddResult

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class AddOptions:
    """How clips are added (checked once for a whole batch by :func:`add_options`)."""

    mode: StorageMode = "audio"
    variants: tuple[str, ...] = ("english",)
    exaggeration: float = DEFAULT_EXAGGERATION
    tags: tuple[str, ...] = ()
    consent: str = ""
    added_by: str = ""
    keep_audio: bool = True
    base: str | None = None
    force: bool = False


@dataclass
class Prepared:
    """Everything computed for one clip before the transaction that stores it (picklable: arrays and bytes)."""

    source: str
    name: str
    sha256: str
    options: AddOptions
    duration: float
    sample_rate: int
    channels: int
    loudness_lufs: float | None
    inspection: dict[str, object]
    speaker_emb: np.ndarray | None
    xvector: np.ndarray | None
    fingerprint: str
    audio: bytes | None = None
    """The kept reference as a float WAV, when the options keep audio."""
    voice_files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """``variant -> (voice file bytes, weights fingerprint)`` in conditionals mode."""
    warnings: list[str] = field(default_factory=list)


def check_variants(variant: str | Sequence[str]) -> tuple[str, ...]:
    """One variant or several, checked and de-duplicated in order."""
    items = [variant] if isinstance(variant, str) else list(variant)
    if not items:
        raise InvalidOptionError(f"give at least one variant: {', '.join(VARIANTS)}")
    out: list[str] = []
    for v in items:
        v = check_variant(v)
        if v not in out:
            out.append(v)
    return tuple(out)


def check_mode(mode: str) -> StorageMode:
    """``mode`` if it is a storage mode, else :class:`~voicebank.errors.InvalidOptionError` naming them."""
    if mode not in STORAGE_MODES:
        raise InvalidOptionError(f"unknown storage mode {mode!r}: choose one of {', '.join(STORAGE_MODES)}")
    return cast(StorageMode, mode)


def add_options(mode: str = "audio", variant: str | Sequence[str] = "english", *,
                exaggeration: float = DEFAULT_EXAGGERATION, tags: Iterable[str] = (), consent: str = "",
                added_by: str | None = None, keep_audio: bool = True, base: str | None = None,
                force: bool = False) -> AddOptions:
    """Checked :class:`AddOptions` (:class:`~voicebank.errors.InvalidOptionError` naming the bad option)."""
    m = check_mode(mode)
    variants = check_variants(variant)
    ex = check_exaggeration(exaggeration)
    if m == "audio" and not keep_audio:
        raise InvalidOptionError("mode 'audio' keeps the audio by definition; keep_audio=False needs mode "
                                 "'conditionals'")
    if base is not None and m != "embedding":
        raise InvalidOptionError("base= is for embedding-only voices (mode 'embedding')")
    # audio mode keeps the audio by definition, embedding mode never; conditionals mode unless told not to
    keep = m == "audio" or (m == "conditionals" and keep_audio)
    return AddOptions(m, variants, ex, clean_tags(tags), consent, current_user() if added_by is None else added_by,
                      keep, base, force)


def prepare(clip: Clip, options: AddOptions, engine: Computes, *, name: str) -> Prepared:
    """Inspect and extract one clip for :func:`commit` (no catalogue access, no writes).

    Raises :class:`~voicebank.errors.ReferenceRejectedError` for an unusable clip (or a poor one without
    ``options.force``) and :class:`~voicebank.errors.AudioError` for audio the models refuse.
    """
    label = clip.name
    inspection = inspect_clip(clip, variants=options.variants)
    if inspection.errors:
        raise ReferenceRejectedError(f"{label}: refused: {'; '.join(f.message for f in inspection.errors)}",
                                     source=label, findings=tuple(f.message for f in inspection.errors))
    warnings = [f.message for f in inspection.warnings]
    if warnings and not options.force:
        raise ReferenceRejectedError(f"{label}: poor reference: {'; '.join(warnings)}; pass --force (force=True) "
                                     "to add it anyway", source=label, findings=tuple(warnings))
    primary = options.variants[0]
    speaker: np.ndarray | None
    xvector: np.ndarray | None
    files: dict[str, tuple[bytes, str]] = {}
    if options.mode == "conditionals":
        voices = {v: engine.extract(clip, v, exaggeration=options.exaggeration) for v in options.variants}
        first = voices[primary]
        xvector = first.xvector.float().cpu().numpy()
        if first.t3 is not None:
            speaker = first.speaker_embedding.float().cpu().numpy()
        else:
            speaker, _ = engine.embeddings(clip, primary)
        files = {v: (voice.to_bytes(), voice.metadata.weights_fingerprint) for v, voice in voices.items()}
    else:
        speaker, xvector = engine.embeddings(clip, primary)
    return Prepared(
        source=label, name=name, sha256=clip.sha256, options=options, duration=round(clip.duration, 6),
        sample_rate=clip.sample_rate, channels=clip.channels, loudness_lufs=inspection.loudness_lufs,
        inspection=inspection.to_dict(), speaker_emb=speaker,
        xvector=None if xvector is None else np.asarray(xvector, dtype=np.float32),
        fingerprint=engine.weights_fingerprint(embedding_variant(primary)),
        audio=wav_bytes(clip.samples, clip.sample_rate) if options.keep_audio else None, voice_files=files,
        warnings=[f"poor reference (forced): {w}" for w in warnings])


def pending(p: Prepared) -> Pending:
    """What storing a prepared clip writes (see :mod:`.bulk`)."""
    opts = p.options
    source_name = Path(p.source).name if p.source and not p.source.startswith("<") else p.source
    new = NewVoice(
        name=p.name, mode=opts.mode, variant=opts.variants[0],
        exaggeration=None if opts.variants == ("vc",) else opts.exaggeration, speaker_emb=p.speaker_emb,
        xvector=p.xvector, weights_fingerprint=p.fingerprint, origin="audio", source_sha256=p.sha256,
        source_name=source_name, duration=p.duration, sample_rate=p.sample_rate, channels=p.channels,
        loudness_lufs=p.loudness_lufs, base=opts.base, inspection=p.inspection, added_by=opts.added_by,
        consent=opts.consent, tags=opts.tags, audio=p.audio, voice_files=dict(p.voice_files))
    return Pending(new, p.source, None, tuple(p.warnings))


def commit(store: VoiceStore, p: Prepared, *, similar: Sequence[tuple[str, float, float]] = (),
           similar_warnings: Sequence[str] = (), norms: tuple[float, float, int] | None = None) -> AddResult:
    """Store a prepared clip in one transaction (files written under the write lock).

    ``similar`` / ``similar_warnings``: the stored voices that sound alike, ``(name, score, speaker_cosine)``
    (see :func:`~voicebank.library.search.find_similar`), reported in the result; ``norms``: the speaker
    embedding's similarity statistics, stored with it.
    """
    item = pending(p)
    info: VoiceInfo = store.insert(replace(item.new, norms=norms), label=p.source)
    warnings = [*p.warnings, *similar_warnings]
    for w in warnings:
        log.info("%s: %s", p.source, w)
    return AddResult(p.source, p.name, "added", "", tuple(warnings), tuple(similar), info)


def add_all(prepare: Callable[[AudioSource, str | None], Prepared], commit: Callable[[Prepared], AddResult],
            sources: Sequence[AudioSource], names: Sequence[str | None] | None, *, workers: int,
            progress: Progress | None = None) -> list[AddResult]:
    """``commit(prepare(source, name))`` of every source, one :class:`AddResult` each (``added``, ``skipped``
    for audio already stored, ``failed`` with the reason), never raising for one bad clip.

    Clips are prepared on ``workers`` threads, two per worker ahead, and committed on this thread, the one
    writer, in input order, so names and duplicate warnings do not depend on thread timing and an interrupted
    run keeps every clip committed so far.  ``progress(1)`` is called as each clip finishes.
    """
    results: list[AddResult] = []

    def label_and_name(i: int) -> tuple[str, str]:
        given = names[i] if names is not None else None
        if given:
            return describe(sources[i]), str(given)
        try:
            return describe(sources[i]), default_name(sources[i])
        except InvalidVoiceNameError:
            return describe(sources[i]), ""

    def one(i: int) -> Prepared:
        return prepare(sources[i], names[i] if names is not None else None)

    with closing(ordered_map(one, range(len(sources)), workers=workers, ahead=2 * workers,
                             thread_name_prefix="voicebank-add")) as prepared:
        for i, fut in enumerate(prepared):
            label, guess = label_and_name(i)
            try:
                results.append(commit(fut.result()))
            except DuplicateAudioError as e:
                results.append(AddResult(label, guess, "skipped", str(e)))
            except VoicebankError as e:
                results.append(AddResult(label, guess, "failed", str(e)))
            except (OSError, ValueError, TypeError, RuntimeError) as e:  # unexpected: one clip must not stop a batch
                log.debug("%s: failed", label, exc_info=True)
                results.append(AddResult(label, guess, "failed", f"{type(e).__name__}: {e}"))
            if progress:
                progress(1)
    return results


__all__ = ["AddOptions", "Prepared", "add_all", "add_options", "check_mode", "check_variants", "commit", "pending",
           "prepare"]
