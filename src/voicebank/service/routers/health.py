"""``/healthz`` (alive), ``/readyz`` (models loaded, library writable), ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from ..deps import ReadKey, ServiceDep
from ..schemas import ErrorBody

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", summary="Ready to serve: models loaded, library writable",
            responses={503: {"description": "Not ready"}})
def readyz(service: ServiceDep) -> JSONResponse:
    """200 when the models are loaded and the library directory is writable, else 503 with what is missing."""
    checks = {"models_loaded": service.ready, "library_writable": service.writable()}
    ok = all(checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", **checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
            responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})
def metrics(service: ServiceDep, _key: ReadKey) -> PlainTextResponse:
    """Requests by route and status, latencies, extraction latency, cache and queue figures."""
    return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
