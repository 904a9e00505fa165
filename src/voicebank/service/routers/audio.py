"""Stateless audio tools: ``/v1/embed``, ``/v1/extract`` and ``/v1/inspect`` (nothing is stored)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response

from ...audio import Clip
from ...chatterbox import DEFAULT_EXAGGERATION, EXAGGERATION_MAX, EXAGGERATION_MIN, Variant
from ...library import inspect_reference
from ..deps import ReadKey, ServiceDep
from ..schemas import Embedding, FormatName, InspectionResult
from ..uploads import read_upload
from .voices import ERRORS

router = APIRouter(prefix="/v1", tags=["audio"])

ClipUpload = Annotated[UploadFile, File(description="Reference clip: WAV, FLAC, MP3 or OGG/Vorbis.")]


@router.post("/embed", response_model=Embedding, responses=ERRORS, summary="Embeddings of a clip")
async def embed(service: ServiceDep, _key: ReadKey, audio_sample: ClipUpload,
                variant: Annotated[Variant, Form()] = "english") -> dict[str, Any]:
    """The clip's speaker embedding (256) and x-vector (192), as extraction computes them; nothing is stored.
    Without torch installed, the speaker embedding alone (from the numpy voice encoder; ``xvector`` null)."""
    upload = await read_upload(audio_sample, max_seconds=service.settings.max_audio_seconds)
    emb_variant = "english" if variant == "vc" else variant

    def run() -> tuple[list[float], list[float] | None]:
        speaker, xvector = service.library.engine.embeddings(Clip.read(upload.source(), name=upload.filename),
                                                             emb_variant)
        return ([float(x) for x in speaker.tolist()],
                None if xvector is None else [float(x) for x in xvector.tolist()])

    speaker, xvector = await service.pool.run_once(f"embed:{upload.sha256}:{emb_variant}", "embed", run)
    return {"object": "embedding", "id": None, "variant": emb_variant, "speaker_embedding": speaker,
            "xvector": xvector, "duration": round(upload.duration, 6)}


@router.post("/extract", response_class=Response, summary="Conditionals of a clip (voice file)",
             responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}, "description": "Voice file"}})
async def extract(service: ServiceDep, _key: ReadKey, audio_sample: ClipUpload,
                  variant: Annotated[Variant, Form()] = "english",
                  exaggeration: Annotated[float, Form(ge=EXAGGERATION_MIN, le=EXAGGERATION_MAX,
                                                    allow_inf_nan=False)] = DEFAULT_EXAGGERATION,
                  format: Annotated[FormatName, Form()] = "safetensors") -> Response:
    """The clip's ready conditionals as a voice file, without storing anything."""
    upload = await read_upload(audio_sample, max_seconds=service.settings.max_audio_seconds)

    def run() -> bytes:
        voice = service.library.engine.extract(Clip.read(upload.source(), name=upload.filename), variant,
                                               exaggeration=exaggeration)
        if format == "safetensors":
            return voice.to_bytes()
        with tempfile.TemporaryDirectory(prefix="voicebank-pt-") as tmp:
            return voice.save(Path(tmp) / "voice.pt").read_bytes()

    data = await service.pool.run_once(f"extract:{upload.sha256}:{variant}:{exaggeration}:{format}", "extract", run)
    stem = upload.filename.rsplit(".", 1)[0] or "voice"
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(stem + '.' + format)}"})


@router.post("/inspect", response_model=InspectionResult, responses=ERRORS, summary="Inspect a reference clip")
async def inspect(service: ServiceDep, _key: ReadKey, audio_sample: ClipUpload,
                  variant: Annotated[list[Variant] | None, Form()] = None) -> dict[str, Any]:
    """What adding the clip would find (duration, level, clipping, loudness, silence, SNR, the verdict)."""
    upload = await read_upload(audio_sample, max_seconds=service.settings.max_audio_seconds)
    result = await service.pool.run("inspect", lambda: inspect_reference(upload.source(),
                                                                         variants=variant or ("english",)))
    return {"object": "audio.inspection", "usable": result.usable, "inspection": result.to_dict()}
