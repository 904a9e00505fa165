"""The service's errors: one JSON shape, ``{"error": {"code", "message", "param"}}``, with stable codes.

Library errors (:mod:`voicebank.errors`) are mapped to an HTTP status, a code and their wording over HTTP here,
in one table, so that a client can branch on ``code`` without parsing messages, and messages speak of form
fields and routes (not CLI options or Python calls) and never name the server's library directory.
"""

from __future__ import annotations

import ast
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

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


# --- library errors in HTTP terms -----------------------------------------------------------------------
#
# Library messages are written for the CLI and Python (``--force (force=True)``, ``voicebank list``,
# ``Library.update(...)``) and name the library directory.  A client of the service can do none of that and
# should not learn where the server keeps its files: each library error is answered with the wording below (in
# terms of form fields and routes), and :func:`scrub` takes the library's path out of every message.

Wording = Callable[[str], str]

_REPAIR = "the server's operator can check and repair the library"


def _operator(message: str) -> str:
    """Advice meant for whoever runs the library (a CLI command, a ``--library`` option) in HTTP terms."""
    message = re.sub(r"; (?:run|see) `?voicebank library [a-z]+(?: --repair)?`?", f"; {_REPAIR}", message)
    message = message.replace("; make it writable or pass another directory with --library",
                              "; the server's operator must make it writable")
    return message


def _not_found(message: str) -> str:
    return message.replace("; see `voicebank list`", "; GET /v1/audio/voices lists the voices")


def _exists(message: str) -> str:
    return message.replace("; choose another name (--name) or remove the old one first",
                           "; choose another name, or DELETE /v1/audio/voices/{id} first")


def _rejected(message: str) -> str:
    return message.replace("; pass --force (force=True) to add it anyway",
                           "; send the form field force=true to add it anyway")


def _base(message: str) -> str:
    def patch(m: re.Match[str]) -> str:
        try:
            name = str(ast.literal_eval(m.group(1)))
        except (ValueError, SyntaxError):
            name = "{id}"
        return (f"set one with PATCH /v1/audio/voices/{quote(name, safe='')} and the JSON body "
                '{"base": "<voice>"}')

    return re.sub(r"pass base= \(--base NAME\), or set one with Library\.update\((.+), base=\.\.\.\)$", patch,
                  message)


def _no_audio(message: str) -> str:
    return re.sub(r"; add the clip again with --variant (\S+)$",
                  r"; add the clip again (POST /v1/audio/voices) with the form field variant=\1", message)


def _option(message: str) -> str:
    return message.replace("base= is for embedding-only voices (mode 'embedding')",
                           "the form field base is for embedding-only voices (mode=embedding)")


def _weights(message: str) -> str:
    """Weights errors name server paths and ``--weights``: over HTTP, what is missing and whose job it is (the
    whole message goes to the server's log)."""
    m = re.search(r"for variant '([a-z]+)'", message)
    if message.startswith("no Chatterbox weights") or "incomplete weights" in message or "does not exist" in message:
        what = f"no Chatterbox weights for variant {m.group(1)!r}" if m else "no complete set of Chatterbox weights"
        return f"this server has {what} (its log says where it looked); the server's operator must install them"
    return ("this server's Chatterbox weights cannot be used (its log has the details); the server's operator must "
            "replace them")


def _same(message: str) -> str:
    return message


# Most specific first: the first class an exception is an instance of wins.  Each row: the class, the HTTP
# status, the stable code, and the wording of its message over HTTP.
_LIBRARY_ERRORS: tuple[tuple[type[vb.VoicebankError], int, str, Wording], ...] = (
    (vb.VoiceNotFoundError, 404, "voice_not_found", _not_found),
    (vb.DuplicateAudioError, 409, "duplicate_audio", _same),
    (vb.VoiceExistsError, 409, "voice_exists", _exists),
    (vb.InvalidVoiceNameError, 422, "invalid_name", _same),
    (vb.ReferenceRejectedError, 422, "reference_rejected", _rejected),
    (vb.BaseVoiceError, 409, "base_voice_required", _base),
    (vb.NoAudioKeptError, 409, "no_audio_kept", _no_audio),
    (vb.ContentMissingError, 500, "voice_content_missing", _operator),
    (vb.LibraryUnavailableError, 503, "library_unavailable", _operator),
    (vb.CatalogueDamagedError, 500, "library_damaged", _operator),
    (vb.CatalogueError, 503, "library_busy", _operator),
    (vb.LibraryWriteError, 507, "library_not_writable", _operator),
    (vb.AudioTooLongError, 413, "audio_too_long", _same),
    (vb.AudioTooShortError, 422, "audio_too_short", _same),
    (vb.UnsupportedAudioFormatError, 415, "unsupported_audio", _same),
    (vb.AudioDecodeError, 415, "undecodable_audio", _same),
    (vb.EmptyAudioError, 400, "empty_audio", _same),
    (vb.SilentAudioError, 422, "silent_audio", _same),
    (vb.NonFiniteAudioError, 422, "non_finite_audio", _same),
    (vb.AudioOutOfRangeError, 422, "audio_out_of_range", _same),
    (vb.AudioError, 400, "bad_audio", _same),
    (vb.UnsafeVoiceFileError, 415, "unsafe_voice_file", _same),
    (vb.VoiceFileError, 415, "bad_voice_file", _same),
    (vb.WeightsError, 503, "weights_unavailable", _weights),
    (vb.ClusterUnavailableError, 503, "extraction_unavailable", _operator),
    (vb.LibraryError, 500, "library_error", _operator),
    (vb.InvalidOptionError, 422, "invalid_option", _option),
    (vb.NonFiniteOutputError, 422, "non_finite_output", _same),
)

RETRY_AFTER_S = 2
"""``Retry-After`` of a 503 for a catalogue that is locked or cannot be reached now (seconds)."""

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 413: "too_large",
               415: "unsupported_media_type", 422: "invalid_request", 429: "busy", 503: "unavailable"}


def http_message(e: vb.VoicebankError) -> str:
    """The message of a library error in HTTP terms (form fields and routes, not CLI options or Python calls)."""
    for cls, _status, _code, wording in _LIBRARY_ERRORS:
        if isinstance(e, cls):
            return wording(str(e))
    return str(e)


def from_library(e: vb.VoicebankError, *, param: str | None = None) -> ApiError:
    """The :class:`ApiError` a library error becomes: its status, code and HTTP wording (:func:`http_message`)."""
    for cls, status, code, wording in _LIBRARY_ERRORS:
        if isinstance(e, cls):
            retry = ({"Retry-After": str(RETRY_AFTER_S)}
                     if status == 503 and isinstance(e, (vb.CatalogueError, vb.ClusterUnavailableError)) else None)
            return ApiError(status, code, wording(str(e)), param=param, headers=retry)
    return ApiError(400, "voicebank_error", str(e), param=param)


def scrub(message: str, roots: Iterable[str | os.PathLike[str]]) -> str:
    """``message`` without the server's library directory: "the library at ROOT" becomes "the library", a file
    under it its path inside the library, so that no answer tells a client where the server keeps its files."""
    for root in sorted({str(r) for r in roots if str(r) not in ("", ".", "/")}, key=len, reverse=True):
        if root not in message:
            continue
        esc = re.escape(root.rstrip("/"))
        inside = esc + r"(?:/[^\s:;,()'\"]*)?"
        message = re.sub(r"the library catalogue at " + inside, "the library catalogue", message)
        message = re.sub(r" in the library at " + esc + r"(?![^\s:;,()'\"])", "", message)
        message = re.sub(r"the library at " + esc + r"(?![^\s:;,()'\"])", "the library", message)
        message = re.sub(r"^" + inside + r": ", "", message)
        message = re.sub(esc + r"/([^\s:;,()'\"]+)", r"\1", message)
        message = message.replace(root.rstrip("/"), "the library")
    return message


def library_roots(request: Request) -> list[str]:
    """The forms of the served library's directory that a message may hold (as given and resolved)."""
    service = getattr(request.app.state, "service", None)
    roots: list[str] = []
    lib = getattr(service, "_library", None)
    if lib is not None:
        roots.append(str(lib.path))
    configured = getattr(getattr(service, "settings", None), "library", None)
    if configured is not None and isinstance(configured, Path):
        roots += [str(configured), str(Path(configured).expanduser().resolve())]
    return roots


def body(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message, "param": param}}


def error_response(e: ApiError, roots: Iterable[str | os.PathLike[str]] = ()) -> JSONResponse:
    """The response of an :class:`ApiError` (its message without the library directory ``roots``)."""
    return JSONResponse(body(e.code, scrub(e.message, roots), e.param), status_code=e.status, headers=e.headers)


def _said(error: Any) -> str:
    """What a validation error says: a NaN or infinite number "must be a finite number" (not "should be less
    than or equal to 2", which is what a range check makes of NaN)."""
    if error.get("type") == "finite_number":
        return f"must be a finite number, got {error.get('input')!r}"
    return str(error.get("msg", ""))


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` in the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, e: ApiError) -> JSONResponse:
        return error_response(e, library_roots(request))

    @app.exception_handler(vb.VoicebankError)
    async def _library(request: Request, e: vb.VoicebankError) -> JSONResponse:
        err = from_library(e)
        if err.status >= 500:
            log.error("library error: %s", e)
        return error_response(err, library_roots(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> JSONResponse:
        errs = e.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        message = "; ".join(f"{'.'.join(str(p) for p in x.get('loc', ())[1:]) or 'request'}: {_said(x)}"
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
