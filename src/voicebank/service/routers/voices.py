"""``/v1/audio/voices``: list, add, show, change and delete voices; their ready conditionals (cached, with a
strong ETag), embedding, kept reference audio and inspection report; compare, search and the 2-D map."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse

from ...chatterbox import DEFAULT_EXAGGERATION, EXAGGERATION_MAX, EXAGGERATION_MIN, Variant
from ...errors import LibraryError, VoicebankError, VoiceNotFoundError
from ...library import VoiceInfo, check_name
from ...store.records import StorageMode
from .. import browse, voicemap
from ..deps import ReadKey, ServiceDep, WriteKey
from ..errors import ApiError, from_library
from ..revalidation import etag_matches
from ..schemas import (
    CompareRequest,
    ComparisonObject,
    Embedding,
    ErrorBody,
    FormatName,
    Report,
    SearchRequest,
    SearchResult,
    TagList,
    VoiceCount,
    VoiceCreated,
    VoiceDeleted,
    VoiceList,
    VoiceMap,
    VoiceObject,
    VoicePatch,
    voice_object,
)
from ..state import Service
from ..uploads import read_upload

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/audio", tags=["voices"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)}

VoiceId = Annotated[str, "the voice's name (URL-encoded)"]
NO_BASE_WARNING = ("this voice keeps only a speaker embedding and has no base voice, so it cannot serve "
                   "conditionals (GET /v1/audio/voices/{id}/conditionals answers 409 base_voice_required) until "
                   'a base is set: PATCH /v1/audio/voices/{id} with the JSON body {{"base": "<voice>"}}')
MEDIA = {"safetensors": "application/octet-stream", "pt": "application/octet-stream"}


def valid_name(name: str, param: str = "name") -> str:
    """A name the library accepts (so one a URL can address), else 422."""
    try:
        check_name(name)
    except VoicebankError as e:
        raise from_library(e, param=param) from e
    return name


def missing(service: Service, name: str, param: str = "id") -> ApiError:
    """The 404 of a voice that is not there, with close names from its neighbours in the name index (never a
    comparison with every name)."""
    return from_library(browse.not_found(service.library, name), param=param)


def lookup(service: Service, name: str) -> VoiceInfo:
    """The voice called ``name``: always 404 when there is none (never a fallback voice).  Served from
    :attr:`Service.lookups` while the catalogue's generation is the one it was read at."""
    generation = service.generation()  # before the lookup: a commit after it makes a new generation
    known = service.lookups.get(name, generation) if generation is not None else None
    if isinstance(known, VoiceInfo):
        return known
    if name not in service.library:
        raise missing(service, name)
    try:
        info = service.library.show(name)
    except VoiceNotFoundError as e:  # removed meanwhile
        raise missing(service, name) from e
    if generation is not None:
        service.lookups.put(name, generation, info)
    return info


# --- list, add ------------------------------------------------------------------------------------------


@router.get("/voices", response_model=VoiceList, responses=ERRORS, summary="List voices (OpenAI shape)")
async def list_voices(
    service: ServiceDep, _key: ReadKey,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="Voices per page.")] = None,
    after: Annotated[str | None, Query(max_length=128, description="Return voices after this id (the previous "
                                       "page's next_after).")] = None,
    tag: Annotated[str | None, Query(max_length=128, description="Only voices with this tag.")] = None,
    prefix: Annotated[str | None, Query(max_length=128, description="Only names starting with this (exact "
                                        "case; read from the name index).")] = None,
    q: Annotated[str | None, Query(max_length=128, description="Only names containing this (any case).")] = None,
    mode: Annotated[StorageMode | None, Query(description="Only voices of this storage mode.")] = None,
) -> dict[str, Any]:
    """Voices sorted by name, ``limit`` per page; pass ``next_after`` as ``after`` for the next page.  A page
    examines at most a few thousand names of the index, so with a rare filter (``q``, ``tag``, ``mode``) a page
    may hold fewer than ``limit`` voices, or none, while ``has_more`` is true: go on from ``next_after``."""
    n = limit or service.settings.default_page_size
    f = browse.Filter(prefix=prefix, contains=q, tag=tag, mode=mode)

    def read() -> tuple[browse.Page, list[VoiceInfo]]:
        page = browse.page_names(service.library, f, limit=n, after=after)
        return page, browse.infos(service.library, page.names)

    page, infos = await service.run_io(read)
    data = [voice_object(i) for i in infos]
    return {"object": "list", "data": data, "has_more": page.has_more, "next_after": page.next_after,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.post("/voices", response_model=VoiceCreated, status_code=201, responses=ERRORS, summary="Add a voice")
async def create_voice(
    request: Request, service: ServiceDep, _key: WriteKey,
    audio_sample: Annotated[UploadFile, File(description="Reference clip: WAV, FLAC, MP3 or OGG/Vorbis.")],
    name: Annotated[str, Form(min_length=1, max_length=128, description="The voice's name (its id).")],
    consent: Annotated[str, Form(min_length=1, max_length=2000,
                                 description="Who consented to this voice being kept, and how.")],
    mode: Annotated[StorageMode, Form(description="Storage mode.")] = "audio",
    variant: Annotated[list[Variant] | None, Form(description="Variant(s); the first is primary.")] = None,
    exaggeration: Annotated[float, Form(ge=EXAGGERATION_MIN, le=EXAGGERATION_MAX,
                                        allow_inf_nan=False)] = DEFAULT_EXAGGERATION,
    tags: Annotated[list[Annotated[str, Form(max_length=128)]] | None, Form(max_length=64)] = None,
    base: Annotated[str | None, Form(max_length=128, description="Base voice (embedding mode).")] = None,
    force: Annotated[bool, Form(description="Accept a poor (not unusable) reference.")] = False,
) -> dict[str, Any]:
    """Upload a reference clip and keep it as a voice.  The clip is decoded and inspected before anything is
    stored; unusable clips are refused (422), poor ones too unless ``force``.  The same audio uploaded twice
    at once is processed once: the second upload waits and is then answered 409 (duplicate)."""
    valid_name(name)
    upload = await read_upload(audio_sample, max_seconds=service.settings.max_audio_seconds)
    variants = list(variant or ["english"])
    if mode == "conditionals" and len(variants) > 4:
        raise ApiError(422, "invalid_request", "at most the four variants", param="variant")
    lib = service.library
    user = getattr(request.state, "key_id", None) or "service"

    def add() -> Any:
        return lib.add(upload.source(), name, mode=mode, variant=variants if len(variants) > 1 else variants[0],
                       exaggeration=exaggeration, tags=tags or (), consent=consent, added_by=f"api:{user}",
                       base=base, force=force)

    result = await service.pool.serialized(
        f"add:{upload.sha256}", lambda: service.pool.run("add", add))
    if result.voice is None:  # add() raises on refusal; a result without a voice would be a library bug
        raise ApiError(500, "internal_error", "the library reported no voice")
    log.info("voice added", extra={"voice": name, "mode": mode, "sha256": upload.sha256})
    warnings = list(result.warnings)
    if result.voice.mode == "embedding" and not result.voice.base:
        warnings.append(NO_BASE_WARNING.format(id=quote(result.voice.name, safe="")))
    return {**voice_object(result.voice), "warnings": warnings,
            "similar": [{"id": n, "score": round(sc, 6), "speaker_cosine": round(c, 6)}
                        for n, sc, c in result.similar]}


# --- whole-library views (before /voices/{id} so that they are not read as ids) --------------------------


@router.get("/map", response_model=VoiceMap, responses=ERRORS, summary="2-D map of the voices (PCA)")
async def voice_map(
    service: ServiceDep, _key: ReadKey,
    tag: Annotated[str | None, Query(max_length=128, description="Only voices with this tag.")] = None,
    limit: Annotated[int, Query(ge=2, le=voicemap.MAP_POINTS, description="The most voices sampled.")
                     ] = voicemap.MAP_POINTS,
    around: Annotated[str | None, Query(max_length=128, description="Also place this voice and its nearest.")
                      ] = None,
    k: Annotated[int, Query(ge=1, le=voicemap.MAX_NEAR, description="How many nearest voices.")] = 10,
) -> dict[str, Any]:
    """An even sample of at most ``limit`` voices (every voice of a smaller library) placed on the plane of the
    first two principal components of their speaker embeddings (centred); near points are similar voices.  With
    ``around``, that voice (``role`` ``focus``) and its ``k`` nearest (``near``) are placed on the same plane."""
    if around is not None:
        valid_name(around, "around")
        if around not in service.library:
            raise missing(service, around, "around")
    return await service.run_io(functools.partial(voicemap.voice_map, service.library, tag=tag, cap=limit,
                                                  around=around, k=k))


@router.get("/count", response_model=VoiceCount, responses=ERRORS, summary="How many voices")
async def count(service: ServiceDep, _key: ReadKey,
                tag: Annotated[str | None, Query(max_length=128, description="Only voices with this tag.")] = None,
                ) -> dict[str, Any]:
    """How many voices the library holds (with ``tag``): a count over an index."""
    return {"object": "audio.voice.count", "tag": tag,
            "voices": await service.run_io(browse.count, service.library, tag)}


@router.get("/tags", response_model=TagList, responses=ERRORS, summary="The tags in use")
async def tags(service: ServiceDep, _key: ReadKey,
               limit: Annotated[int, Query(ge=1, le=browse.MAX_TAGS)] = browse.MAX_TAGS) -> dict[str, Any]:
    """The distinct tags of the voices, sorted (at most ``limit``)."""
    found = await service.run_io(functools.partial(browse.tags, service.library, limit=limit + 1))
    return {"object": "list", "data": found[:limit], "has_more": len(found) > limit}


@router.post("/voices/compare", response_model=ComparisonObject, responses=ERRORS, summary="Compare two voices")
async def compare(body: CompareRequest, service: ServiceDep, _key: ReadKey) -> dict[str, Any]:
    """Cosine similarity of the speaker embeddings (and x-vectors) of two stored voices."""
    for param, name in (("a", body.a), ("b", body.b)):
        valid_name(name, param)
        if name not in service.library:
            raise ApiError(404, "voice_not_found", f"no voice named {name!r}", param=param)
    c = await asyncio.to_thread(functools.partial(service.library.compare, body.a, body.b, names_only=True))
    return {"object": "audio.voice.comparison", "a": c.a, "b": c.b, "score": c.score,
            "speaker_cosine": c.speaker_cosine,
            "xvector_cosine": c.xvector_cosine, "threshold": c.threshold, "same_speaker": c.same_speaker}


SEARCH_JSON = {"requestBody": {"content": {"application/json": {"schema": {
    "title": "SearchRequest", "type": "object", "required": ["name"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128},
                   "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5},
                   "tag": {"anyOf": [{"type": "string", "maxLength": 128}, {"type": "null"}]}}}}}}}


async def _search_json(request: Request) -> SearchRequest:
    """The JSON body of a search by name (``{"name", "k", "tag"}``), as ``compare`` takes its body."""
    from pydantic import ValidationError

    try:
        data = json.loads(await request.body())
    except ValueError as e:
        raise ApiError(422, "invalid_request", f"the body is not valid JSON ({e})") from e
    try:
        return SearchRequest.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError([{**x, "loc": ("body", *x["loc"])} for x in e.errors()]) from e


@router.post("/voices/search", response_model=SearchResult, responses=ERRORS, summary="Nearest voices",
             openapi_extra=SEARCH_JSON)
async def search(
    request: Request, service: ServiceDep, _key: ReadKey,
    name: Annotated[str | None, Form(max_length=128, description="A stored voice to search from.")] = None,
    audio_sample: Annotated[UploadFile | None, File(description="Or a clip to search from.")] = None,
    k: Annotated[int, Form(ge=1, le=100)] = 5,
    tag: Annotated[str | None, Form(max_length=128)] = None,
) -> dict[str, Any]:
    """The ``k`` stored voices closest to a voice (``name``) or an uploaded clip, best first.  A search by name
    may send JSON instead of a form: ``{"name": "alice", "k": 5, "tag": null}``."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
        body = await _search_json(request)
        name, k, tag = body.name, body.k, body.tag
    if (name is None) == (audio_sample is None):
        raise ApiError(422, "invalid_request", "pass exactly one of name and audio_sample, as multipart/form-data "
                       '(or a JSON body {"name": ..., "k": ..., "tag": ...} to search by name)', param="name")
    if name is not None:
        valid_name(name)
        if name not in service.library:
            raise ApiError(404, "voice_not_found", f"no voice named {name!r}", param="name")
        matches = await asyncio.to_thread(functools.partial(service.library.search, name, k=k, tag=tag,
                                                            names_only=True))
        label = name
    else:
        assert audio_sample is not None
        upload = await read_upload(audio_sample, max_seconds=service.settings.max_audio_seconds)
        matches = await service.pool.run_once(f"search:{upload.sha256}:{k}:{tag}", "embed",
                                              lambda: service.library.search(upload.source(), k=k, tag=tag))
        label = upload.filename
    return {"object": "list", "query": label,
            "data": [{"id": m.name, "score": m.score, "speaker_cosine": m.speaker_cosine,
                      "xvector_cosine": m.xvector_cosine} for m in matches]}


# --- one voice ------------------------------------------------------------------------------------------


@router.get("/voices/{voice_id}", response_model=VoiceObject, responses=ERRORS, summary="One voice")
def get_voice(voice_id: VoiceId, service: ServiceDep, _key: ReadKey) -> dict[str, Any]:
    """Everything the library knows about a voice (no tensors: see ``/conditionals``)."""
    return voice_object(lookup(service, voice_id))


@router.patch("/voices/{voice_id}", response_model=VoiceObject, responses=ERRORS, summary="Change a voice")
async def patch_voice(voice_id: VoiceId, patch: VoicePatch, service: ServiceDep, _key: WriteKey) -> dict[str, Any]:
    """Rename, replace tags, change the consent note, default exaggeration or base voice."""
    lookup(service, voice_id)
    lib = service.library
    if patch.name is not None:
        valid_name(patch.name)
        if patch.name != voice_id and patch.name in lib:
            raise ApiError(409, "voice_exists", f"cannot rename {voice_id!r}: {patch.name!r} is taken", param="name")
    if patch.base is not None:
        valid_name(patch.base, "base")
        lookup(service, patch.base)

    def apply() -> VoiceInfo:
        info = lib.update(voice_id, tags=patch.tags, consent=patch.consent, base=patch.base,
                          exaggeration=patch.exaggeration)
        if patch.name is not None and patch.name != voice_id:
            info = lib.rename(voice_id, patch.name)
        return info

    try:
        info = await asyncio.to_thread(apply)
    except VoiceNotFoundError as e:  # removed meanwhile
        raise missing(service, voice_id) from e
    return voice_object(info)


@router.delete("/voices/{voice_id}", response_model=VoiceDeleted, responses=ERRORS, summary="Delete a voice")
async def delete_voice(voice_id: VoiceId, service: ServiceDep, _key: WriteKey) -> dict[str, Any]:
    """Remove a voice; its files go when no other voice uses them."""
    if voice_id not in service.library:
        raise missing(service, voice_id)
    try:
        dependents = await asyncio.to_thread(service.library.remove, voice_id)
    except VoiceNotFoundError as e:  # removed meanwhile
        raise missing(service, voice_id) from e
    return {"id": voice_id, "object": "audio.voice.deleted", "deleted": True, "dependents": dependents}


def _cache_key(service: Service, info: VoiceInfo, variant: str | None, exaggeration: float | None,
               fmt: str) -> str:
    """What decides the bytes of a conditionals file: the voice's stored state and the request."""
    state: list[Any] = [info.name, info.mode, info.exaggeration, info.base, info.weights_fingerprint,
                        sorted((f.role, f.variant, f.sha256) for f in info.files)]
    if info.mode == "embedding" and info.base:
        try:
            base = service.library.show(info.base)
            state.append(sorted((f.role, f.variant, f.sha256) for f in base.files))
        except VoiceNotFoundError:
            state.append(None)
    return json.dumps([state, variant, exaggeration, fmt], separators=(",", ":"))


def _needs_extraction(info: VoiceInfo, variant: str | None) -> bool:
    v = variant or info.variant
    return info.mode == "audio" and not any(f.role in ("cache", "conditionals") and f.variant == v
                                            for f in info.files)


def _voice_bytes(service: Service, name: str, variant: str | None, exaggeration: float | None, fmt: str) -> bytes:
    voice = service.library.get(name, variant=variant, exaggeration=exaggeration)
    if fmt == "safetensors":
        return voice.to_bytes()
    with tempfile.TemporaryDirectory(prefix="voicebank-pt-") as tmp:
        return voice.save(Path(tmp) / "voice.pt").read_bytes()


@router.head("/voices/{voice_id}/conditionals", include_in_schema=False)
@router.get("/voices/{voice_id}/conditionals", responses={**ERRORS, 200: {"content": {"application/octet-stream": {}},
                                                                          "description": "The voice file"},
                                                          304: {"description": "Not modified"}},
            response_class=Response, summary="Ready conditionals (voice file)")
async def conditionals(
    request: Request, voice_id: VoiceId, service: ServiceDep, _key: ReadKey,
    variant: Annotated[Variant | None, Query(description="Default: the voice's own.")] = None,
    exaggeration: Annotated[float | None, Query(
        ge=EXAGGERATION_MIN, le=EXAGGERATION_MAX, allow_inf_nan=False,
        description="Default: the voice's own.")] = None,
    format: Annotated[FormatName, Query(description="safetensors (voicebank) or pt (upstream).")] = "safetensors",
    if_none_match: Annotated[str | None, Header(max_length=1000)] = None,
) -> Response:
    """The voice's ready Chatterbox conditionals, whatever its storage mode, with a strong ``ETag`` (the
    SHA-256 of the bytes): send it back as ``If-None-Match`` to get 304 while the voice is unchanged.  ``HEAD``
    answers the same headers (``ETag``, ``Content-Length``) without the body."""
    generation = service.library.generation()  # before the lookup: a change after it makes a new generation
    info = lookup(service, voice_id)
    key = _cache_key(service, info, variant, exaggeration, format)
    url = (request.scope["path"], request.scope.get("query_string", b""))
    known = service.cache.etag_of(key)
    if known is not None and etag_matches(if_none_match, f'"{known}"'):
        service.revalidation.record(*url, generation, f'"{known}"')
        service.metrics.not_modified.inc()
        return Response(status_code=304, headers={"ETag": f'"{known}"', "Cache-Control": "no-cache"})
    entry = service.cache.get(key)
    if entry is None:
        service.metrics.cache_misses.inc()
        if _needs_extraction(info, variant):
            data = await service.pool.run_once(f"get:{key}", "get",
                                               lambda: _voice_bytes(service, voice_id, variant, exaggeration, format))
        else:
            data = await service.run_io(_voice_bytes, service, voice_id, variant, exaggeration, format)
        entry = service.cache.put(key, data)
    else:
        service.metrics.cache_hits.inc()
    service.revalidation.record(*url, generation, entry.etag)
    headers = {"ETag": entry.etag, "Cache-Control": "no-cache",
               "Content-Disposition": f"attachment; filename*=UTF-8''{quote(voice_id + '.' + format, safe='')}"}
    if etag_matches(if_none_match, entry.etag):
        service.metrics.not_modified.inc()
        return Response(status_code=304, headers={"ETag": entry.etag, "Cache-Control": "no-cache"})
    return Response(entry.data, media_type=MEDIA[format], headers=headers)


@router.get("/voices/{voice_id}/embedding", response_model=Embedding, responses=ERRORS, summary="Speaker embedding")
async def embedding(voice_id: VoiceId, service: ServiceDep, _key: ReadKey) -> dict[str, Any]:
    """The voice's stored 256-d speaker embedding and 192-d x-vector (``null`` when the voice has none: a VC voice
    has no speaker embedding).  Read from the catalogue: nothing is extracted."""
    info = lookup(service, voice_id)
    try:
        speaker, xvector = await service.run_io(service.library.vectors, voice_id)
    except VoiceNotFoundError as e:  # removed meanwhile
        raise missing(service, voice_id) from e
    xv = [float(x) for x in xvector.tolist()] if xvector is not None else None
    return {"object": "embedding", "id": voice_id, "variant": info.variant, "duration": info.duration,
            "speaker_embedding": [float(x) for x in speaker.tolist()] if speaker is not None else None,
            "xvector": xv}


@router.head("/voices/{voice_id}/audio", include_in_schema=False)
@router.get("/voices/{voice_id}/audio", response_class=StreamingResponse, summary="The kept reference audio",
            responses={**ERRORS, 200: {"content": {"audio/wav": {}}, "description": "WAV (float32 mono)"}})
def audio(request: Request, voice_id: VoiceId, service: ServiceDep, _key: ReadKey) -> Response:
    """The decoded reference the voice keeps (float WAV, mono, its own sample rate), for playback (``HEAD``: the
    same headers without the body)."""
    info = lookup(service, voice_id)
    f = next((f for f in info.files if f.role == "audio"), None)
    if f is None:
        raise ApiError(404, "no_audio_kept", f"voice {voice_id!r} keeps no reference audio ({info.mode} mode)",
                       param="id")
    headers = {"Content-Length": str(f.size), "Cache-Control": "no-cache",
               "Content-Disposition": f"inline; filename*=UTF-8''{quote(voice_id + '.wav', safe='')}"}
    if service.shared:  # an object in the bucket (or the host's verified copy): read whole, through the store
        if request.method == "HEAD":
            return Response(media_type="audio/wav", headers=headers)
        data = service.library.store.read_file(f, voice=voice_id)
        return Response(data, media_type="audio/wav", headers=headers)
    try:  # the open file stays readable even if the voice is deleted while it streams
        fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))  # a content file is never a link
    except FileNotFoundError as e:
        raise ApiError(404, "voice_not_found", f"voice {voice_id!r} was removed", param="id") from e
    except OSError as e:
        raise LibraryError(f"voice {voice_id!r}: its audio file is unreadable ({e.strerror or e}); the library "
                           "needs a check") from e
    fh = os.fdopen(fd, "rb")  # closed by the generator below
    size = os.fstat(fd).st_size
    if not stat.S_ISREG(os.fstat(fd).st_mode) or size != f.size:
        fh.close()
        raise LibraryError(f"voice {voice_id!r}: its audio file is not the one stored (not a regular file of "
                           f"{f.size} bytes); the library needs a check")
    if request.method == "HEAD":
        fh.close()
        return Response(media_type="audio/wav", headers=headers)

    def chunks() -> Iterator[bytes]:
        with fh:
            while block := fh.read(1 << 16):
                yield block

    return StreamingResponse(chunks(), media_type="audio/wav", headers=headers)


@router.get("/voices/{voice_id}/report", response_model=Report, responses=ERRORS, summary="Inspection report")
def report(voice_id: VoiceId, service: ServiceDep, _key: ReadKey) -> dict[str, Any]:
    """The inspection figures of the voice's reference (duration, level, clipping, loudness, silence, SNR)."""
    info = lookup(service, voice_id)
    findings = info.inspection.get("findings") if info.inspection else None
    usable = None if findings is None else not any(f.get("level") == "error" for f in findings)
    return {"id": voice_id, "object": "audio.voice.report", "usable": usable, "inspection": info.inspection}

