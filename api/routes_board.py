"""The live GPU board: the page at `/` and its data at `GET /api/models/board`.

The page (`api/static/board.html`, `.js`, `.css`: package data, nothing fetched
from elsewhere) draws `/api/models/board`, refreshes it on every event of
`/api/models/events`, and selects, loads, unloads and asks what-ifs through
the API's own REST routes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response

from fovea.api.board import board_body
from fovea.api.deps import ServiceDep
from fovea.api.errors import ApiError
from fovea.api.responses import to_json
from fovea.api.routes_models import PREFIX, _errors

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"board.js": "text/javascript", "board.css": "text/css"}

router = APIRouter()


class NoSuchAsset(ApiError):
    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"No board asset '{name}'")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The board's page."""
    return FileResponse(STATIC / "board.html", media_type="text/html")


@router.get("/board/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """The board's script and style sheet (only those)."""
    if name not in ASSETS:
        raise NoSuchAsset(name)
    return FileResponse(STATIC / name, media_type=ASSETS[name])


@router.get(
    f"{PREFIX}/board",
    responses=_errors(503),
    summary="The GPU board: GPUs with their models' memory, tasks with options and load",
    tags=["board"],
)
async def board(service: ServiceDep) -> Response:
    """Per GPU: declared, planned and measured memory of each model, the threshold; per task:
    options, selected model, phase, device, degraded, load progress."""
    snap = service.readable_snapshot()
    return Response(to_json(board_body(snap.state, snap.gpus)), media_type="application/json")


def install(app: FastAPI) -> None:
    """Add the board's routes to `app`."""
    app.include_router(router)
