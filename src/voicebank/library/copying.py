"""Copying a library to another, between any two backends (a directory; PostgreSQL + an object store).

:func:`copy_library` copies voice by voice through the stores' public API: each voice's row, tags, vectors and
files (kept audio, stored conditionals) are one insertion in the destination (one transaction: a voice is there
whole or not at all), then its cached conditionals (derived files, so a second step).  Bases go before the voices
that borrow from them.

It is resumable: a voice already in the destination under its name with the same content (:func:`signature`:
its files' sha256, its vectors, what decides its conditionals) is skipped, and only its missing caches are
copied.  A name held by another voice in the destination is a *conflict*: reported, never overwritten.

:func:`verify_copy` compares the two afterwards: every source voice in the destination with the same signature
and the same file hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LibraryError, VoiceNotFoundError
from ..store.records import NewVoice, StoredVoice
from ..store.store import VoiceStore

log = logging.getLogger(__name__)


def _vector_digest(v: np.ndarray | None) -> str | None:
    return None if v is None else hashlib.sha256(np.ascontiguousarray(v, dtype=np.float32).tobytes()).hexdigest()


def signature(voice: StoredVoice, *, caches: bool = False) -> str:
    """A digest of what a copy must keep of ``voice``: its stored files (role, variant, sha256, weights
    fingerprint; cached conditionals too with ``caches``), its vectors, and what decides its conditionals and its
    listing (mode, variants, exaggeration, base, source audio, tags, consent)."""
    info = voice.info
    files = sorted((f.role, f.variant, f.sha256, f.weights_fingerprint) for f in info.files
                   if caches or f.role != "cache")
    state: list[Any] = [info.name, info.mode, info.variant, info.exaggeration, info.base, info.source_sha256,
                        info.weights_fingerprint, info.origin, info.experimental, sorted(info.tags), info.consent,
                        files, _vector_digest(voice.speaker_emb), _vector_digest(voice.xvector)]
    return hashlib.sha256(json.dumps(state, separators=(",", ":"), default=str).encode()).hexdigest()


@dataclass
class CopyReport:
    """What :func:`copy_library` did: voices copied, skipped (already there, same content), in conflict (the name
    is another voice's in the destination, or the destination refused it), caches copied, and whether the
    destination now matches the source (:attr:`mismatches` from :func:`verify_copy`)."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    caches: int = 0
    left: int = 0
    """Voices not looked at because ``limit`` stopped the copy."""
    mismatches: dict[str, str] | None = None
    """``None`` until verified; then ``{name: what differs}`` (empty: the destination has every source voice)."""

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.left and self.mismatches == {}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "copied": self.copied, "skipped": self.skipped, "conflicts": self.conflicts,
                "caches": self.caches, "left": self.left, "mismatches": self.mismatches}


def _in_order(src: VoiceStore) -> Iterator[tuple[str, int]]:
    """``(name, position)`` of every voice: those without a base first (by name), then those that borrow one, so
    that a base is always there first.  Only names are held, never every voice at once."""
    later: list[str] = []
    names = src.names()
    i = 0
    for name in names:
        if src.info(name).base is None:
            yield name, i
            i += 1
        else:
            later.append(name)
    for name in later:
        yield name, i
        i += 1


def _new_voice(src: VoiceStore, voice: StoredVoice) -> NewVoice:
    info = voice.info
    audio = next((src.read_file(f, voice=info.name) for f in info.files if f.role == "audio"), None)
    voice_files = {f.variant: (src.read_file(f, voice=info.name), f.weights_fingerprint)
                   for f in info.files if f.role == "conditionals"}
    return NewVoice(name=info.name, mode=info.mode, variant=info.variant, exaggeration=info.exaggeration,
                    speaker_emb=voice.speaker_emb, xvector=voice.xvector, weights_fingerprint=info.weights_fingerprint,
                    origin=info.origin, source_sha256=info.source_sha256, source_name=info.source_name,
                    duration=info.duration, sample_rate=info.sample_rate, channels=info.channels,
                    loudness_lufs=info.loudness_lufs, base=info.base, experimental=info.experimental,
                    provenance=info.provenance, inspection=info.inspection, added_by=info.added_by,
                    consent=info.consent, tags=tuple(info.tags), audio=audio, voice_files=voice_files)


def _copy_caches(src: VoiceStore, dst: VoiceStore, voice: StoredVoice) -> int:
    """Copy the cached conditionals the destination's copy of ``voice`` lacks; how many."""
    there = dst.voice(voice.info.name)
    have = {(f.variant, f.sha256) for f in there.info.files if f.role == "cache"}
    n = 0
    for f in voice.info.files:
        if f.role == "cache" and (f.variant, f.sha256) not in have:
            dst.store_cache(there.id, there.info.name, f.variant, src.read_file(f, voice=voice.info.name),
                            f.weights_fingerprint)
            n += 1
    return n


def copy_library(src: VoiceStore, dst: VoiceStore, *, limit: int | None = None, verify: bool = True,
                 on_voice: Callable[[str, str], None] | None = None) -> CopyReport:
    """Copy every voice of ``src`` into ``dst`` (see the module's docstring); ``limit``: copy at most this many
    (the rest are counted in :attr:`CopyReport.left`, for a later run to finish); ``verify``: compare the two
    afterwards (:func:`verify_copy`); ``on_voice(name, what)``: called after each voice ("copied", "skipped",
    "conflict")."""
    report = CopyReport()
    done = 0
    total = src.count()
    for name, i in _in_order(src):
        if limit is not None and done >= limit:
            report.left = total - i
            break
        try:
            voice = src.voice(name)
        except VoiceNotFoundError:  # removed from the source meanwhile
            continue
        try:
            there: StoredVoice | None = dst.voice(name)
        except VoiceNotFoundError:
            there = None
        if there is not None:
            if signature(there) != signature(voice):
                report.conflicts[name] = "the destination has another voice of that name"
                what = "conflict"
            else:
                report.caches += _copy_caches(src, dst, voice)
                report.skipped.append(name)
                what = "skipped"
        else:
            try:
                dst.insert(_new_voice(src, voice), label=name)
            except LibraryError as e:
                if isinstance(e, VoiceNotFoundError):
                    raise
                report.conflicts[name] = str(e)
                what = "conflict"
            else:
                report.caches += _copy_caches(src, dst, voice)
                report.copied.append(name)
                done += 1
                what = "copied"
        if on_voice is not None:
            on_voice(name, what)
    if verify and not report.left:
        report.mismatches = verify_copy(src, dst)
    return report


def verify_copy(src: VoiceStore, dst: VoiceStore) -> dict[str, str]:
    """``{name: what differs}`` for every voice of ``src`` that ``dst`` lacks or holds otherwise (its files'
    hashes, vectors or settings); empty when ``dst`` has them all."""
    out: dict[str, str] = {}
    for name in src.names():
        voice = src.voice(name)
        try:
            there = dst.voice(name)
        except VoiceNotFoundError:
            out[name] = "missing from the destination"
            continue
        ours = {(f.role, f.variant, f.sha256) for f in voice.info.files}
        theirs = {(f.role, f.variant, f.sha256) for f in there.info.files}
        lacking = sorted(f for f in ours - theirs)  # the destination may have cached more, never less
        if lacking or {f for f in theirs - ours if f[0] != "cache"}:
            out[name] = "different files: " + ", ".join(f"{r} {v} {d[:12]}" for r, v, d in sorted(ours ^ theirs))
        elif signature(there) != signature(voice):
            out[name] = "different vectors or settings"
    return out


__all__ = ["CopyReport", "copy_library", "signature", "verify_copy"]
