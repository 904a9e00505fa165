"""Rebuilding a damaged catalogue from the content files (``voicebank library check --repair``).

The damaged catalogue is set aside (renamed, never deleted) and a new one registers every intact content file:
a voice file becomes a ``conditionals`` voice (its own metadata says its variant, exaggeration and weights), a
kept reference an ``audio`` voice (``voicebank library reextract NAME`` computes its embeddings).  Names come
from what the damaged catalogue still yields, else ``recovered-<sha256 prefix>``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chatterbox import DEFAULT_EXAGGERATION
from ..errors import VoicebankError
from ..store.blobs import BlobStore, sha256_file
from ..store.records import NewVoice
from ..store.recovery import salvage, set_aside
from ..store.store import AUDIO_SUFFIX, VOICE_SUFFIX, VoiceStore


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did: where the damaged catalogue went, the voices registered, the files left out (why)."""

    set_aside: str | None
    recovered: tuple[tuple[str, str], ...]
    """``(voice name, what)``"""
    skipped: tuple[tuple[str, str], ...]
    """``(file, why)``: kept on disk, not registered."""

    def to_dict(self) -> dict[str, Any]:
        return {"set_aside": self.set_aside, "recovered": [list(r) for r in self.recovered],
                "skipped": [list(s) for s in self.skipped]}


def rebuild(root: str | os.PathLike[str]) -> RebuildReport:
    """Set the catalogue of the library at ``root`` aside and register its content files in a new one."""
    root = Path(root)
    blobs = BlobStore(root)
    files = [(d, s, p) for d, s, p in blobs.files() if d and p.is_file()]
    moved = set_aside(root)
    known = salvage(moved)
    recovered: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    store = VoiceStore(root, rebuilding=True)
    try:
        # kept audio first, so a voice's salvaged name goes to its audio (its voice files then get a suffix)
        for digest, suffix, path in sorted(files, key=lambda f: (f[1] != AUDIO_SUFFIX, f[0])):
            rel = blobs.relative(path)
            try:
                if sha256_file(path) != digest:
                    skipped.append((rel, "damaged (its sha256 does not match its name)"))
                    continue
                name, role, _ = known.get(digest, (f"recovered-{digest[:12]}", "", ""))
                if role == "cache":
                    skipped.append((rel, "cached conditionals (extracted again on use)"))
                    continue
                new = _new_voice(path.read_bytes(), suffix, rel)
                if new is None:
                    skipped.append((rel, f"not a voice or audio file ({suffix or 'no suffix'})"))
                    continue
                for candidate in (name, f"{name}-{digest[:8]}"):
                    if not store.contains(candidate):
                        break
                new = NewVoice(**{**new.__dict__, "name": candidate})
                store.insert(new, label=rel)
                recovered.append((candidate, new.mode))
            except VoicebankError as e:
                skipped.append((rel, str(e)))
            except OSError as e:  # a link, a device, an unreadable file: never followed or read to its end
                skipped.append((rel, f"unreadable ({e.strerror or e})"))
    finally:
        store.close()
    return RebuildReport(str(moved) if moved else None, tuple(recovered), tuple(skipped))


def _new_voice(data: bytes, suffix: str, rel: str) -> NewVoice | None:
    provenance = {"recovered_from": rel}
    if suffix == VOICE_SUFFIX:
        from ..voice.voice import Voice

        voice = Voice.from_bytes(data, where=rel)
        meta = voice.metadata
        return NewVoice(
            name="", mode="conditionals", variant=meta.variant,
            exaggeration=meta.exaggeration if voice.t3 is not None else None,
            speaker_emb=voice.speaker_embedding.float().numpy() if voice.t3 is not None else None,
            xvector=voice.xvector.float().numpy(), weights_fingerprint=meta.weights_fingerprint, origin="recovered",
            duration=meta.source_duration, sample_rate=meta.source_sample_rate, provenance=provenance,
            voice_files={meta.variant: (data, meta.weights_fingerprint)})
    if suffix == AUDIO_SUFFIX:
        import soundfile as sf

        try:
            info = sf.info(io.BytesIO(data))
        except (sf.LibsndfileError, RuntimeError, ValueError) as e:
            raise VoicebankError(f"{rel}: unreadable audio ({e})") from e
        return NewVoice(name="", mode="audio", variant="english", exaggeration=DEFAULT_EXAGGERATION,
                        speaker_emb=None, xvector=None,
                        weights_fingerprint="", origin="recovered", duration=round(info.duration, 6),
                        sample_rate=int(info.samplerate), channels=1, provenance=provenance, audio=data)
    return None


__all__ = ["RebuildReport", "rebuild"]
