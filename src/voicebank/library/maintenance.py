"""Keeping a library sound: ``check`` (and repair), ``stale`` and ``reextract``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np

from ..errors import MissingDependencyError, NoAudioKeptError, VoicebankError
from ..models.torch_runtime import INSTALL_TORCH
from ..options import embedding_variant
from ..progress import Progress
from ..store.records import VoiceInfo
from ..store.store import VoiceStore
from .computes import Computes
from .materialise import extract_kept
from .results import CheckProblem, CheckReport, ReextractResult, StaleVoice

log = logging.getLogger(__name__)


def check(store: VoiceStore, engine: Callable[[], Computes], *, repair: bool = False,
          verify_hashes: bool = True, delete_orphans: bool = False) -> CheckReport:
    """Verify the library and clean what is provably garbage (see :meth:`Library.check <voicebank.Library.check>`).

    Nothing is deleted while the catalogue is damaged (then the report says so and stops), and content files
    no voice references are deleted only with ``delete_orphans``.
    """
    problems: list[CheckProblem] = []
    integrity = store.integrity_problem()
    if integrity is not None:
        what = integrity if "is damaged" in integrity else f"the catalogue is damaged: {integrity}"
        problems.append(CheckProblem("", what, "nothing was deleted; restore "
                                     "catalogue.sqlite3 from a backup, or import the voice files under blobs/ into "
                                     "a new library"))
        return CheckReport(0, 0, tuple(problems), (), ())
    bad_rows: list[tuple[str, str]] = []
    voices = store.all_voices(on_bad=lambda name, why: bad_rows.append((name, why)))
    for name, why in bad_rows:
        problems.append(CheckProblem(name, why, f"voicebank rm {name!r}, then add or import it again (its files "
                                     "are kept until then)"))
    removed_temp = store.remove_stale_temp()
    orphans = store.remove_orphans(delete=delete_orphans and not bad_rows)
    n_files, damage = store.damaged_files(verify_hashes=verify_hashes)
    refs = store.file_references()
    modes = {v.id: v.info.mode for v in voices}
    for name, voice_id, role, variant, digest in refs:
        if digest in damage:
            what = f"{role} file" + (f" ({variant})" if variant else "")
            problems.append(_repair_file(store, engine, name, voice_id, modes.get(voice_id, ""), role, variant,
                                         damage[digest], what, repair))
    for v in voices:
        name = v.info.name
        roles = {r for _, vid, r, _, _ in refs if vid == v.id}
        if v.speaker_emb_malformed or v.xvector_malformed:
            problems.append(CheckProblem(name, "stored embedding is malformed", f"voicebank library reextract {name}"))
        if v.info.mode == "audio" and "audio" not in roles:
            problems.append(CheckProblem(name, "audio voice without its audio file",
                                         f"voicebank rm {name!r} and add the clip again"))
        if v.info.mode == "conditionals" and "conditionals" not in roles:
            problems.append(CheckProblem(name, "conditionals voice without a voice file",
                                         f"voicebank rm {name!r} and add the clip again"))
        if v.info.mode == "embedding" and v.speaker_emb is None and v.xvector is None:
            problems.append(CheckProblem(name, "embedding voice without an embedding",
                                         f"voicebank rm {name!r} and add the clip again"))
    deleted = delete_orphans and not bad_rows
    return CheckReport(len(voices), n_files, tuple(problems), tuple(removed_temp), tuple(orphans if deleted else ()),
                       tuple(() if deleted else orphans))


def _repair_file(store: VoiceStore, engine: Callable[[], Computes], name: str, voice_id: int, mode: str, role: str,
                 variant: str, problem: str, what: str, repair: bool) -> CheckProblem:
    if role == "cache":
        if repair:
            store.drop_file(voice_id, role, variant)
        return CheckProblem(name, f"cached conditionals: {problem}", "voicebank library check --repair (they are "
                            "extracted again on use)", repair)
    if role == "audio":
        if mode == "conditionals":
            if repair:
                store.drop_file(voice_id, role, variant)
            return CheckProblem(name, f"kept audio: {problem}", "voicebank library check --repair (drops the "
                                "audio; the voice file still works)", repair)
        return CheckProblem(name, f"audio: {problem}", f"the voice is lost: voicebank rm {name!r} and add the "
                            "clip again")
    # a stored voice file: re-extract from the kept audio when there is some
    if repair:
        try:
            if store.info(name).has_audio:
                reextract_one(store, engine(), name, only_variant=variant)
                return CheckProblem(name, f"{what}: {problem}", "re-extracted from the kept audio", True)
        except VoicebankError as e:
            return CheckProblem(name, f"{what}: {problem}", f"re-extraction failed ({e}); voicebank rm {name!r} "
                                "and add the clip again")
    return CheckProblem(name, f"{what}: {problem}", "voicebank library check --repair re-extracts it when the "
                        f"audio was kept; else voicebank rm {name!r} and add it again")


def stale(store: VoiceStore, current: Callable[[str], str], *, names: Iterable[str] | None = None,
          ) -> list[StaleVoice]:
    """Voice parts whose weights fingerprint differs from ``current(variant)`` (the weights loaded now).

    Parts with no recorded fingerprint (upstream ``.pt`` imports) are not reported.
    """
    wanted = set(names) if names is not None else None
    out = []
    for v in store.all_voices():
        info = v.info
        if wanted is not None and info.name not in wanted:
            continue
        try:
            out.extend(_stale_parts(info, current))
        except VoicebankError as e:  # one odd voice never stops a library-wide command
            log.warning("skipped voice %r: %s", info.name, e)
    return out


def _stale_parts(info: VoiceInfo, current: Callable[[str], str]) -> list[StaleVoice]:
    out = []
    if info.weights_fingerprint:
        cur = current(embedding_variant(info.variant))
        if info.weights_fingerprint != cur:
            out.append(StaleVoice(info.name, info.variant, "embedding", info.weights_fingerprint, cur))
    for f in info.files:
        if f.role != "audio" and f.weights_fingerprint:
            cur = current(f.variant)
            if f.weights_fingerprint != cur:
                out.append(StaleVoice(info.name, f.variant, f.role, f.weights_fingerprint, cur))
    return out


def reextract(store: VoiceStore, engine: Callable[[], Computes], names: Iterable[str], *,
              progress: Progress | None = None) -> list[ReextractResult]:
    """Re-extract voices in place from their kept audio (see :meth:`voicebank.Library.reextract`)."""
    results = []
    for name in dict.fromkeys(names):
        try:
            changed = reextract_one(store, engine(), name)
            results.append(ReextractResult(name, "updated" if changed else "current"))
        except VoicebankError as e:
            results.append(ReextractResult(name, "failed", str(e)))
        if progress:
            progress(1)
    return results


def reextract_one(store: VoiceStore, engine: Computes, name: str, *, only_variant: str | None = None) -> bool:
    """Re-extract one voice's embeddings and stored voice files from its kept audio, in one transaction."""
    stored = store.voice(name)
    info = stored.info
    if not info.has_audio:
        raise NoAudioKeptError(f"voice {name!r} keeps no audio ({info.mode} mode), so it cannot be re-extracted; "
                               "add the clip again")
    variants = [f.variant for f in info.files if f.role == "conditionals"]
    if only_variant is not None:
        variants = [v for v in variants if v == only_variant]
    voices = {v: extract_kept(store, engine, stored, v) for v in variants}
    speaker: np.ndarray | None
    if info.variant in voices and voices[info.variant].t3 is not None:
        speaker = voices[info.variant].speaker_embedding.float().numpy()
        xvector = voices[info.variant].xvector.float().numpy()
    else:
        from .materialise import kept_clip

        speaker, xv = engine.embeddings(kept_clip(store, stored), info.variant)
        if xv is None:
            raise MissingDependencyError(f"re-extracting {name!r} computes its x-vector with CAM++, which needs torch: "
                                         f"{INSTALL_TORCH}")
        xvector = xv
    store.replace_extraction(
        stored.id, name, speaker_emb=speaker, xvector=xvector,
        fingerprint=engine.weights_fingerprint(embedding_variant(info.variant)),
        voice_files={v: (voice.to_bytes(), voice.metadata.weights_fingerprint) for v, voice in voices.items()},
        drop_cache=only_variant is None)
    return True


__all__ = ["check", "reextract", "reextract_one", "stale"]
