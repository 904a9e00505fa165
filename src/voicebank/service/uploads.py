"""Request bodies under control: a size limit counted as the bytes arrive, a timeout between pieces, and the
checks an uploaded clip passes before any model or the library sees it.

:class:`BodyLimitMiddleware` wraps the ASGI ``receive`` of every request: a declared ``Content-Length`` over
the limit is refused before a byte is read; otherwise the bytes are counted as they come and the request is
cut off with 413 the moment the count passes the limit, so a 2 GB upload costs at most the limit in memory
(multipart files beyond 1 MiB spool to a temp file).  A body whose next piece does not come within
``body_timeout_s`` (a slow-loris upload) is answered 408 and the connection dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
from dataclasses import dataclass

from fastapi import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..audio import probe
from ..errors import AudioError, EmptyAudioError, VoicebankError
from .errors import ApiError, body, from_library
from .state import Service

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
CLOSE = {"Connection": "close"}
"""Sent with a refusal while the body is still coming: uvicorn then drops the connection instead of reading on."""


class BodyLimitMiddleware:
    """Limit every request body to ``max_bytes`` and the wait for each of its pieces to ``timeout_s``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.timeout_s = float(timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await _refuse(send, 413, "body_too_large", self._too_large())
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), timeout=self.timeout_s)
            except asyncio.TimeoutError:
                log.warning("request body stalled for %.1f s; dropping it", self.timeout_s)
                raise HTTPException(408, f"no request data for {self.timeout_s:g} s; the upload timed out",
                                    headers=CLOSE) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._too_large(), headers=CLOSE)
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> str:
        return f"the request body is over the limit of {self.max_bytes / 2**20:g} MiB"


class AuthGateMiddleware:
    """Refuse a request to the API that carries no valid key before its body is read, so that an unknown client
    cannot make the server receive and spool an upload.  (The routes check the key's scope themselves.)"""

    def __init__(self, app: ASGIApp, *, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope.get("method") != "OPTIONS"
                and scope["path"].startswith(("/v1/", "/metrics"))
                and (self.service.settings.require_keys or self.service.keys.enabled)):
            token = ""
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    scheme, _, token = value.decode("latin-1").partition(" ")
                    token = token.strip() if scheme.lower() == "bearer" else ""
                    break
            if not token:
                await _refuse(send, 401, "missing_api_key", "this server needs an API key: send "
                              "`Authorization: Bearer <key>`", [(b"www-authenticate", b"Bearer")])
                return
            if self.service.keys.verify(token) is None:
                await _refuse(send, 401, "invalid_api_key", "the API key is unknown or revoked",
                              [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, code: str, message: str,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    import json

    payload = json.dumps(body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close"), *(extra or [])]})
    await send({"type": "http.response.body", "body": payload})


@dataclass(frozen=True)
class Upload:
    """An uploaded clip that passed the header checks: its bytes, SHA-256, a safe label and duration."""

    data: bytes
    sha256: str
    filename: str
    duration: float

    def source(self) -> io.BytesIO:
        """A fresh binary file object over the bytes, named after the upload (for messages)."""
        f = io.BytesIO(self.data)
        f.name = self.filename
        return f


def safe_filename(name: str | None) -> str:
    """The last path component of a client's file name, printable and at most 100 characters."""
    base = os.path.basename((name or "").replace("\\", "/")) or "upload"
    base = "".join(c for c in base if c.isprintable())[:100]
    return base or "upload"


async def read_upload(file: UploadFile, *, max_seconds: float, param: str = "audio_sample") -> Upload:
    """Read an uploaded clip (already size-limited by the middleware) and check its header.

    Raises :class:`ApiError`: 400 empty, 415 not decodable audio (including voice files or anything else that
    is not audio), 413 longer than ``max_seconds``.
    """
    chunks = []
    while True:
        chunk = await file.read(READ_CHUNK)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    filename = safe_filename(file.filename)
    if not data:
        raise from_library(EmptyAudioError(f"{filename}: the upload is empty (0 bytes)"), param=param)
    f = io.BytesIO(data)
    f.name = filename
    try:
        info = await asyncio.to_thread(probe, f)
    except AudioError as e:
        raise from_library(e, param=param) from e
    except VoicebankError as e:
        raise from_library(e, param=param) from e
    except (TypeError, ValueError, RuntimeError) as e:
        raise ApiError(415, "undecodable_audio", f"{filename}: not audio that can be decoded ({e})",
                       param=param) from e
    if info.duration > max_seconds:
        raise ApiError(413, "audio_too_long", f"{filename}: {info.duration:.1f} s of audio is over this server's "
                       f"limit of {max_seconds:g} s; trim the clip (3-10 s of clean speech is best)", param=param)
    if info.frames <= 0 or info.sample_rate <= 0:
        raise ApiError(400, "empty_audio", f"{filename}: the clip holds no samples", param=param)
    return Upload(data, hashlib.sha256(data).hexdigest(), filename, info.duration)
