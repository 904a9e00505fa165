"""Adding voices that were computed elsewhere: a voice file, ready conditionals, or embeddings alone (the rows of a
``voicebank batch`` dataset), with the same checks and duplicate warnings as an add, and no temporary files.

Each is one transaction; a voice whose name, source audio or voice file is already stored is refused
(:class:`~voicebank.errors.VoiceExistsError`, :class:`~voicebank.errors.DuplicateAudioError`), so importing the
same voices again adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..chatterbox import SPEAKER_EMB_DIM, XVECTOR_DIM
from ..errors import InvalidOptionError
from ..options import check_exaggeration, check_variant
from ..similarity import DUPLICATE_THRESHOLD
from ..store.blobs import sha256_bytes
from ..store.records import NewVoice
from ..store.store import VoiceStore
from .bulk import Pending, commit_one
from .computes import Computes
from .names import clean_tags
from .results import AddResult
from .scoring import Scoring

if TYPE_CHECKING:
    from ..voice.voice import Voice


def voice_record(voice: Voice, name: str, *, label: str, provenance: Mapping[str, Any], tags: Iterable[str] = (),
                 consent: str = "", added_by: str = "", exaggeration: float | None = None) -> Pending:
    """What importing ready conditionals (a validated :class:`~voicebank.voice.Voice`) stores: a
    ``conditionals`` voice without audio, refused if the same voice file is stored.  ``label`` names the source
    in messages; ``provenance`` is kept with the voice."""
    meta = voice.metadata
    data = voice.to_bytes()
    ex = check_exaggeration(exaggeration) if exaggeration is not None else meta.exaggeration
    speaker = voice.speaker_embedding.float().cpu().numpy() if voice.t3 is not None else None
    new = NewVoice(
        name=name, mode="conditionals", variant=meta.variant, exaggeration=ex if voice.t3 is not None else None,
        speaker_emb=speaker, xvector=voice.xvector.float().cpu().numpy(), weights_fingerprint=meta.weights_fingerprint,
        origin="import", source_sha256=meta.source_sha256 or None, source_name=Path(label).name,
        duration=meta.source_duration, sample_rate=meta.source_sample_rate,
        provenance={**provenance, "hybrid": meta.hybrid}, added_by=added_by, consent=consent, tags=clean_tags(tags),
        voice_files={meta.variant: (data, meta.weights_fingerprint)})
    warnings = (f"the imported voice is a hybrid ({meta.hybrid})",) if meta.hybrid else ()
    return Pending(new, label, sha256_bytes(data), warnings)


def embedding_record(name: str, speaker_emb: np.ndarray, xvector: np.ndarray, *, label: str,
                     variant: str = "english", weights_fingerprint: str = "", source_sha256: str | None = None,
                     duration: float | None = None, sample_rate: int | None = None,
                     provenance: Mapping[str, Any] | None = None, tags: Iterable[str] = (), consent: str = "",
                     added_by: str = "", base: str | None = None) -> Pending:
    """What importing a speaker embedding (256,) and x-vector (192,) computed elsewhere stores: an ``embedding``
    voice (it borrows a ``base`` voice's S3Gen reference when turned into conditionals).  Raises
    :class:`~voicebank.errors.InvalidOptionError` for vectors of the wrong shape or with non-finite values."""
    s = np.asarray(speaker_emb, dtype=np.float32).reshape(-1)
    x = np.asarray(xvector, dtype=np.float32).reshape(-1)
    if s.shape != (SPEAKER_EMB_DIM,) or x.shape != (XVECTOR_DIM,) or not (np.isfinite(s).all() and
                                                                        np.isfinite(x).all()):
        raise InvalidOptionError(f"{label}: an embedding voice needs a finite ({SPEAKER_EMB_DIM},) speaker "
                                 f"embedding and ({XVECTOR_DIM},) x-vector; got {s.shape} and {x.shape}")
    new = NewVoice(
        name=name, mode="embedding", variant=check_variant(variant), exaggeration=None, speaker_emb=s, xvector=x,
        weights_fingerprint=weights_fingerprint, origin="import", source_sha256=source_sha256,
        source_name=Path(label).name, duration=duration, sample_rate=sample_rate, base=base,
        provenance=dict(provenance or {}), added_by=added_by, consent=consent, tags=clean_tags(tags))
    return Pending(new, label)


def import_voice(store: VoiceStore, scoring: Scoring, voice: Voice, name: str, *, label: str,
                 provenance: Mapping[str, Any], tags: Iterable[str] = (), consent: str = "", added_by: str = "",
                 exaggeration: float | None = None, threshold: float = DUPLICATE_THRESHOLD,
                 engine: Computes | None = None) -> AddResult:
    """Add ready conditionals (a validated :class:`~voicebank.voice.Voice`) as a ``conditionals`` voice without
    audio (see :func:`voice_record`), with the duplicate check of an add."""
    pending = voice_record(voice, name, label=label, provenance=provenance, tags=tags, consent=consent,
                           added_by=added_by, exaggeration=exaggeration)
    return commit_one(store, scoring, engine, pending, threshold=threshold)


def import_voice_file(store: VoiceStore, scoring: Scoring, path: Path, name: str, **options: Any) -> AddResult:
    """Add a voice file (voicebank ``.safetensors`` or upstream ``.pt``) as a ``conditionals`` voice without
    audio (see :func:`import_voice` for ``options``).  The file is validated; an unsafe ``.pt`` is refused, never
    run."""
    from ..voice.files import voice_file_format
    from ..voice.voice import Voice

    voice = Voice.load(path)
    fmt = "voicebank" if voice_file_format(path).startswith("voicebank") else "upstream .pt"
    return import_voice(store, scoring, voice, name, label=str(path),
                        provenance={"imported_from": path.name, "format": fmt}, **options)


def import_embedding(store: VoiceStore, scoring: Scoring, name: str, speaker_emb: np.ndarray, xvector: np.ndarray,
                     *, label: str, threshold: float = DUPLICATE_THRESHOLD, engine: Computes | None = None,
                     **record: Any) -> AddResult:
    """Add a speaker embedding (256,) and x-vector (192,) computed elsewhere as an ``embedding`` voice (``record``:
    the options of :func:`embedding_record`), with the duplicate check of an add."""
    pending = embedding_record(name, speaker_emb, xvector, label=label, **record)
    return commit_one(store, scoring, engine, pending, threshold=threshold)


__all__ = ["embedding_record", "import_embedding", "import_voice", "import_voice_file", "voice_record"]
