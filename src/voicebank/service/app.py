"""``create_app(settings)``: the voice service as a FastAPI app.

The app's lifespan owns the heavy objects: it opens the library, loads the extractors' models once, starts the
extraction pool, and on shutdown waits for admitted extractions (an upload in flight finishes or, if the
process dies, its transaction never commits: the library stays consistent) before closing the library.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..engine import Engine
from ..library import Library, resolve_library_path
from ..models.torch_runtime import torch_installed
from ..settings import Settings
from ..store.shared import SharedVoiceStore
from . import errors
from .cache import ConditionalsCache
from .keystores import open_keys
from .logs import request_id, startup_failure_logged
from .metrics import Metrics
from .revalidation import RevalidationMiddleware
from .routers import audio, health, page, voices
from .routers.page import STATIC
from .settings import ServiceSettings
from .state import Service
from .uploads import AuthGateMiddleware, BodyLimitMiddleware
from .workers import ExtractionPool

log = logging.getLogger("voicebank.service")
access_log = logging.getLogger("voicebank.service.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ID_PREFIX = uuid.uuid4().hex[:8]
_ids = itertools.count(1)


def new_request_id() -> str:
    """A request id unique to this process run: a random prefix and a counter (no system call per request)."""
    return f"{_ID_PREFIX}-{next(_ids):08x}"


class RequestContextMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` when sane), times it, counts it by route
    template and status, and logs one JSON line per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    rid = candidate
                break
        rid = rid or new_request_id()
        token = request_id.set(rid)
        status = 500
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            dt = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", None) or ("/static" if scope["path"].startswith("/static/")
                                                        else "<unmatched>")
            method = scope.get("method", "")
            self.metrics.requests.inc(method, template, str(status))
            self.metrics.latency.observe(dt, method, template)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("%s %s %d", method, template, status,
                                extra={"request_id": rid, "method": method, "path": scope["path"], "route": template,
                                       "status": status, "duration_ms": round(dt * 1e3, 3),
                                       "client": (scope.get("client") or ("", 0))[0]})
            request_id.reset(token)


def library_location(settings: ServiceSettings) -> Path | str:
    """The library ``settings`` name: a directory, or a shared library's ``postgresql://`` URL (also from
    ``$VOICEBANK_LIBRARY``)."""
    if settings.library is not None:
        return settings.library
    return Settings.from_env().library_url or resolve_library_path(None)


def build_service(settings: ServiceSettings, library: Library | None = None) -> Service:
    """The service objects for ``settings`` (the library, unless given, is opened later by the lifespan)."""
    lib_path = library.path if library is not None else library_location(settings)
    metrics = Metrics()
    cache = ConditionalsCache(int(settings.cache_mb * 2**20))
    remote = settings.executor == "ray"  # then a worker thread waits for each Ray actor, torch untouched here
    pool = ExtractionPool(settings.ray_workers if remote else settings.workers, settings.queue_size, metrics,
                          threads=None if remote else settings.threads)
    keys = open_keys(lib_path, settings.keys_file)
    service = Service(settings=settings, _library=library, cache=cache, pool=pool, keys=keys, metrics=metrics)
    metrics.gauge("voicebank_cache_bytes", "Bytes of conditionals held in the memory cache.", lambda: cache.bytes)
    metrics.gauge("voicebank_cache_budget_bytes", "Byte budget of the memory cache.", lambda: cache.budget_bytes)
    metrics.gauge("voicebank_cache_entries", "Files held in the memory cache.", lambda: len(cache))
    metrics.gauge("voicebank_cache_evictions", "Files evicted from the memory cache so far.", lambda: cache.evictions)
    metrics.gauge("voicebank_extraction_queue_depth", "Extraction jobs waiting for a worker.", lambda: pool.queued)
    metrics.gauge("voicebank_extraction_in_flight", "Extraction jobs running now.", lambda: pool.running)
    metrics.gauge("voicebank_ready", "1 when the models are loaded.", lambda: float(service.ready))
    return service


def create_app(settings: ServiceSettings | None = None, *, library: Library | None = None) -> FastAPI:
    """The voice service for ``settings``; ``library``: an open library to serve (its engine is reused),
    else the lifespan opens one from ``settings`` and loads its models, once."""
    settings = settings or ServiceSettings()
    service = build_service(settings, library)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            library = await asyncio.to_thread(service.open_library)
            if isinstance(library.store, SharedVoiceStore):  # other replicas' commits, read by a thread of its own
                await asyncio.to_thread(library.store.watch)
            log.info("loading models for %s", ", ".join(settings.variants), extra={"library": str(library.path)})
            t0 = time.perf_counter()
            engine = library.engine
            if isinstance(engine, Engine):
                # without torch, the numpy voice encoder alone: embeddings work, extraction answers "install torch"
                with_torch = torch_installed()
                if not with_torch:
                    log.warning("torch is not installed: serving speaker embeddings (no x-vectors) and stored "
                                "voices; extraction needs torch")
                await asyncio.to_thread(engine.load, settings.variants, embeddings_only=not with_torch)
        except Exception as e:  # one line in the log; `voicebank serve` then exits 1 with the same line
            app.state.startup_error = e
            log.error("cannot start: %s", " ".join(str(e).split()) or type(e).__name__)
            startup_failure_logged()
            raise
        service.ready = True
        log.info("ready in %.1f s: %d voices, %d %s workers, queue %d, cache %g MiB, API keys %s",
                 time.perf_counter() - t0, len(service.library), service.pool.workers, settings.executor,
                 settings.queue_size, settings.cache_mb, "on" if service.keys.enabled else "off (loopback only)")
        url = getattr(app.state, "url", None)
        if url:
            log.info("listening on %s", url, extra={"url": url})
        try:
            yield
        finally:
            service.ready = False
            log.info("shutting down: waiting for admitted extractions")
            await asyncio.to_thread(service.pool.shutdown)
            service.io.shutdown(wait=True)
            service.library.close()
            log.info("stopped")

    # /docs: the interactive API reference with Swagger UI served from the package fastapi-offline (the service
    # extra), so it works without the internet, unlike FastAPI's default, which loads it from a CDN
    app = FastAPIOffline(title="voicebank", version=__version__, lifespan=lifespan,
                         description="Stored Chatterbox voices, served ready: OpenAI-style voice list, ready "
                         "conditionals with strong ETags, embeddings, comparison and search.",
                         docs_url="/docs", redoc_url=None, openapi_url="/openapi.json", static_url="/docs-assets")
    app.state.service = service
    errors.install(app)
    app.include_router(health.router)
    app.include_router(voices.router)
    app.include_router(audio.router)
    if settings.page:
        app.include_router(page.router)
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "If-None-Match", "X-Request-ID"],
                           expose_headers=["ETag", "X-Request-ID", "Retry-After"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.max_upload_mb * 2**20),
                       timeout_s=settings.body_timeout_s)
    conditionals_route = next((r for r in voices.router.routes
                               if getattr(r, "path", None) == "/v1/audio/voices/{voice_id}/conditionals"), None)
    app.add_middleware(RevalidationMiddleware, index=service.revalidation, generation=service.generation,
                       on_hit=service.metrics.not_modified.inc, route=conditionals_route)
    app.add_middleware(AuthGateMiddleware, service=service)
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics)
    return app
