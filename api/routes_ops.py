"""Operational routes: liveness, readiness (cache synced) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fovea.api.deps import CacheDep
from fovea.api.schemas import ErrorBody, HealthBody, ReadyBody

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthBody, summary="Liveness: the process answers")
async def healthz() -> HealthBody:
    """Liveness: the process answers."""
    return HealthBody(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyBody,
    responses={503: {"model": ErrorBody, "description": "Some watch is not synced"}},
    summary="Readiness: every watch of the cache is synced",
)
async def readyz(cache: CacheDep) -> ReadyBody | JSONResponse:
    """Readiness: 200 once every watch of the cache is synced, else 503 saying which."""
    snap = cache.snapshot
    if snap.synced:
        return ReadyBody(status="ready")
    why = ", ".join(f"{kind} ({reason})" for kind, reason in sorted(snap.unsynced.items()))
    return JSONResponse({"error": f"Cache not synced: {why}"}, status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format: request latency, memory per model and per GPU."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
