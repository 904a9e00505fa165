"""Turning a stored voice, whatever its mode, into ready conditionals (and exporting it)."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..audio.clip import Clip
from ..chatterbox import DEFAULT_EXAGGERATION, SPEAKER_EMB_DIM, XVECTOR_DIM
from ..errors import (
    BaseVoiceError,
    ContentMissingError,
    LibraryError,
    LibraryUnavailableError,
    NoAudioKeptError,
    VoiceFileError,
)
from ..options import check_variant
from ..store.records import StoredVoice
from ..store.store import VoiceStore
from .computes import Computes

if TYPE_CHECKING:
    from ..voice.voice import Voice

log = logging.getLogger(__name__)

CurrentFingerprint = Callable[[str], "str | None"]
"""``variant -> fingerprint of the weights loaded now``, or ``None`` when no weights are at hand."""



def kept_clip(store: VoiceStore, stored: StoredVoice) -> Clip:
    """The kept reference of a voice as a :class:`Clip` (its source's sha256, channels and rate)."""
    import soundfile as sf

    info = stored.info
    f = next((f for f in info.files if f.role == "audio"), None)
    if f is None:
        raise NoAudioKeptError(f"voice {info.name!r} keeps no audio ({info.mode} mode)")
    data = store.read_file(f, voice=info.name)
    try:
        samples, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        raise LibraryError(f"voice {info.name!r}: its audio file {store.blobs.relative(f.path)} is damaged (not a "
                           "readable WAV); "
                           "run `voicebank library check --repair`") from e
    return Clip.from_samples(samples, int(sample_rate), sha256=info.source_sha256 or "", channels=info.channels or 1,
                             name=info.name)


def extract_kept(store: VoiceStore, engine: Computes, stored: StoredVoice, variant: str) -> Voice:
    """Conditionals of a voice's kept audio, equal to extracting from the original file."""
    ex = stored.info.exaggeration if stored.info.exaggeration is not None else DEFAULT_EXAGGERATION
    return engine.extract(kept_clip(store, stored), variant, exaggeration=ex)


def materialise(store: VoiceStore, engine: Callable[[], Computes], name: str, *, variant: str | None,
                base: str | None, current: CurrentFingerprint, stored: StoredVoice | None = None) -> Voice:
    """Ready conditionals of ``name`` in ``variant`` (default its primary), at its stored exaggeration.

    ``conditionals`` voices load their file (no model); ``audio`` voices are extracted from the kept audio on
    first use and cached; ``embedding`` voices are rebuilt as a hybrid with ``base`` (default: the base set
    when adding).  ``engine`` is called only when something must be computed; ``stored``: the voice as the
    caller already read it (else read here).
    """
    from ..voice.voice import Voice

    stored = stored if stored is not None else store.voice(name)
    info = stored.info
    v = check_variant(variant) if variant is not None else info.variant
    if info.mode == "embedding":
        return hybrid(store, engine, stored, v, base, current)
    files = {(f.role, f.variant): f for f in info.files}
    f = files.get(("conditionals", v)) or files.get(("cache", v))
    now = current(v) if f is not None else None
    if f is not None and f.role == "cache" and now is not None and f.weights_fingerprint != now:
        log.info("%s: cached %s conditionals are stale (weights %s, now %s); extracting again", name, v,
                 f.weights_fingerprint, now)
        f = None
    if f is not None:
        if f.role == "conditionals" and now is not None and f.weights_fingerprint not in ("", now):
            log.warning("%s: stored %s conditionals come from other weights (%s, now %s); "
                        "`voicebank library reextract %s` updates them", name, v, f.weights_fingerprint, now, name)
        try:
            return Voice.from_bytes(store.read_file(f, voice=name), where=f"voice {name!r} ({v})")
        except LibraryUnavailableError:  # the object store is down: not a damaged file
            raise
        except (VoiceFileError, LibraryError) as e:
            if f.role != "cache" and isinstance(e, ContentMissingError):
                raise
            if f.role != "cache":
                raise LibraryError(f"voice {name!r}: its {v} voice file is unreadable ({e}); run "
                                   "`voicebank library check --repair`") from e
            log.warning("%s: cached conditionals unreadable (%s); extracting again", name, e)
    if not info.has_audio:
        have = ", ".join(info.variants) or "none"
        raise NoAudioKeptError(f"voice {name!r} has conditionals for {have} only and keeps no audio to extract "
                               f"{v}; add the clip again with --variant {v}")
    voice = extract_kept(store, engine(), stored, v)
    store.store_cache(stored.id, name, v, voice.to_bytes(), voice.metadata.weights_fingerprint)
    return voice


def hybrid(store: VoiceStore, engine: Callable[[], Computes], stored: StoredVoice, variant: str, base: str | None,
           current: CurrentFingerprint) -> Voice:
    """An embedding-only voice made whole: its speaker embedding and x-vector with the S3Gen reference and T3
    prompt tokens of ``base``; ``VoiceMetadata.hybrid`` says so."""
    import torch

    from ..voice.voice import Voice, VoiceMetadata

    info = stored.info
    base_name = base or info.base
    if base_name is None:
        raise BaseVoiceError(f"voice {info.name!r} keeps only a speaker embedding; getting conditionals borrows "
                             "the S3Gen reference of a base voice: pass base= (--base NAME), or set one with "
                             f"Library.update({info.name!r}, base=...)")
    store.check_base(base_name)
    base_voice = materialise(store, engine, base_name, variant=variant, base=None, current=current)
    speaker, xvector = stored.speaker_emb, stored.xvector
    if xvector is None and speaker is not None:
        raise LibraryError(f"voice {info.name!r} was added without torch, so it keeps no x-vector (CAM++), which its "
                           "hybrid conditionals need: add the clip again where torch is installed")
    if xvector is None or (speaker is None and base_voice.t3 is not None):
        raise LibraryError(f"voice {info.name!r}: its stored embedding is damaged; run `voicebank library check`")
    t3 = None
    if base_voice.t3 is not None and speaker is not None:
        t3 = replace(base_voice.t3, speaker_emb=torch.from_numpy(speaker.copy()).reshape(1, SPEAKER_EMB_DIM))
    gen = replace(base_voice.gen, embedding=torch.from_numpy(xvector.copy()).reshape(1, XVECTOR_DIM))
    meta = VoiceMetadata(
        variant=variant, exaggeration=base_voice.metadata.exaggeration if t3 is not None else None,
        weights_fingerprint=info.weights_fingerprint, source_sha256=info.source_sha256 or "",
        source_duration=info.duration, source_sample_rate=info.sample_rate,
        hybrid=f"gen from {base_name}: speaker embedding and x-vector of {info.name!r}, S3Gen reference and T3 "
               f"prompt tokens of {base_name!r}")
    return Voice(t3, gen, meta)


def export(store: VoiceStore, get: Callable[[], Voice], name: str, path: str | os.PathLike[str], *,
           mkdir: bool = False) -> Path:
    """Write voice ``name`` to ``path`` atomically, by suffix: ``.safetensors`` / ``.pt`` (ready conditionals from
    ``get()``), ``.wav`` (the kept reference), ``.npy`` (the (256,) float32 speaker embedding).  ``path``'s
    directory must exist unless ``mkdir``."""
    from ..fileio import atomic_write, check_output_path

    path = Path(path)
    suffix = path.suffix.lower()
    check_output_path(path, mkdir=mkdir)  # before any work: no voice is built for a path that cannot be written
    if suffix in (".safetensors", ".pt"):
        return get().save(path, mkdir=mkdir)
    stored = store.voice(name)
    if suffix == ".wav":
        f = next((f for f in stored.info.files if f.role == "audio"), None)
        if f is None:
            raise NoAudioKeptError(f"voice {name!r} keeps no audio ({stored.info.mode} mode); export .safetensors "
                                   "or .pt")
        data = store.read_file(f, voice=name)
        from ..store.blobs import sha256_bytes

        if sha256_bytes(data) != f.sha256:  # an export never copies a damaged file
            raise LibraryError(f"voice {name!r}: its audio file {store.blobs.relative(f.path)} is damaged; run "
                               "voicebank library check --repair")
        atomic_write(path, lambda out: out.write(data), mkdir=mkdir)
        return path
    if suffix == ".npy":
        emb = stored.speaker_emb
        if emb is None:
            raise LibraryError(f"voice {name!r} has no speaker embedding (a VC voice); export .safetensors instead")
        atomic_write(path, lambda out: np.save(out, emb), mkdir=mkdir)
        return path
    raise LibraryError(f"{path}: cannot export to {suffix or '(no suffix)'}; use .safetensors, .pt, .wav or .npy")


__all__ = ["export", "extract_kept", "hybrid", "kept_clip", "materialise"]
