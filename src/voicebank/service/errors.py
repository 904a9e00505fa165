"""The service's errors: one JSON shape, ``{"error": {"code", "message", "param"}}``, with stable codes.

Library errors (:mod:`voicebank.errors`) are mapped to an HTTP status and a code here, in one table, so that a
client can branch on ``code`` without parsing messages.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors as vb

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as JSON: ``status`` (HTTP), a stable ``code``, a human ``message``, the ``param`` at fault."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}


# Most specific first: the first class an exception is an instance of wins.
_LIBRARY_ERRORS: tuple[tuple[type[vb.VoicebankError], int, str], ...] = (
    (vb.VoiceNotFoundError, 404, "voice_not_found"),
    (vb.DuplicateAudioError, 409, "duplicate_audio"),
    (vb.VoiceExistsError, 409, "voice_exists"),
    (vb.InvalidVoiceNameError, 422, "invalid_name"),
    (vb.ReferenceRejectedError, 422, "reference_rejected"),
    (vb.BaseVoiceError, 409, "base_voice_required"),
    (vb.NoAudioKeptError, 409, "no_audio_kept"),
    (vb.CatalogueDamagedError, 500, "library_damaged"),
    (vb.CatalogueError, 503, "library_busy"),
    (vb.LibraryWriteError, 507, "library_not_writable"),
    (vb.AudioTooLongError, 413, "audio_too_long"),
    (vb.AudioTooShortError, 422, "audio_too_short"),
    (vb.UnsupportedAudioFormatError, 415, "unsupported_audio"),
    (vb.AudioDecodeError, 415, "undecodable_audio"),
    (vb.EmptyAudioError, 400, "empty_audio"),
    (vb.SilentAudioError, 422, "silent_audio"),
    (vb.NonFiniteAudioError, 422, "non_finite_audio"),
    (vb.AudioOutOfRangeError, 422, "audio_out_of_range"),
    (vb.AudioError, 400, "bad_audio"),
    (vb.UnsafeVoiceFileError, 415, "unsafe_voice_file"),
    (vb.VoiceFileError, 415, "bad_voice_file"),
    (vb.WeightsError, 503, "weights_unavailable"),
    (vb.LibraryError, 500, "library_error"),
    (vb.InvalidOptionError, 422, "invalid_option"),
    (vb.NonFiniteOutputError, 422, "non_finite_output"),
)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 413: "too_large",
               415: "unsupported_media_type", 422: "invalid_request", 429: "busy", 503: "unavailable"}


def from_library(e: vb.VoicebankError, *, param: str | None = None) -> ApiError:
    """The :class:`ApiError` a library error becomes."""
    for cls, status, code in _LIBRARY_ERRORS:
        if isinstance(e, cls):
            return ApiError(status, code, str(e), param=param)
    return ApiError(400, "voicebank_error", str(e), param=param)


def body(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message, "param": param}}


def error_response(e: ApiError) -> JSONResponse:
    """The response of an :class:`ApiError`."""
    return JSONResponse(body(e.code, e.message, e.param), status_code=e.status, headers=e.headers)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` in the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, e: ApiError) -> JSONResponse:
        return error_response(e)

    @app.exception_handler(vb.VoicebankError)
    async def _library(request: Request, e: vb.VoicebankError) -> JSONResponse:
        err = from_library(e)
        if err.status >= 500:
            log.error("library error: %s", e)
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> JSONResponse:
        errs = e.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        message = "; ".join(f"{'.'.join(str(p) for p in x.get('loc', ())[1:]) or 'request'}: {x.get('msg', '')}"
                            for x in errs[:5])
        return JSONResponse(body("invalid_request", message or "invalid request", ".".join(loc) or None),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(e.status_code, "http_error")
        message = str(e.detail) if e.detail else code
        if e.status_code == 413:
            code = "body_too_large"
        if e.status_code == 400 and "parsing the body" in message:
            code, message = "malformed_body", "the request body could not be parsed (malformed multipart or JSON)"
        return JSONResponse(body(code, message), status_code=e.status_code, headers=dict(e.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(body("internal_error", "internal error; the server log has the details"),
                            status_code=500)
