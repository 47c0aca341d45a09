"""The /api/models routes: the contract's four, plus load, unload and events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query
from fastapi.responses import Response, StreamingResponse

from fovea.api import events
from fovea.api.deps import CacheDep, FeedDep, ServiceDep
from fovea.api.errors import BadRequest
from fovea.api.schemas import (
    ConfigBody,
    ErrorBody,
    LoadBody,
    SelectBody,
    StatusBody,
    ValidateBody,
)
from fovea.api.service import ModelService
from fovea.api.what_if import what_if_json

PREFIX = "/api/models"
KEEPALIVE_S = 15.0


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "Bad request: unknown task type or a missing or malformed parameter",
        401: "Bearer token missing or wrong (only when FOVEA_API_API_TOKEN is set)",
        404: "Model not found for the task",
        500: "Unexpected failure, or the model failed to load",
        503: "Kubernetes API unreachable (cache not synced), or load timed out",
    }
    return {code: {"model": ErrorBody, "description": words[code]} for code in codes}


def _json(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


read_router = APIRouter(prefix=PREFIX, tags=["models"])
write_router = APIRouter(prefix=PREFIX, tags=["models"])


def add_polled_reads(app: FastAPI, service: ModelService) -> None:
    """GET /config and /status: registered on the app itself, bound to `service`.

    The frontend polls these two, and each is a precomputed answer of a few
    microseconds. An included router's extra routing level and a resolved
    dependency would each cost about a sixth of that again (see bench/api.py),
    so they have neither.
    """

    async def get_config() -> Response:
        """Every task of the catalog: its options (original snake_case fields) and selection."""
        return _json(service.config_json())

    async def get_status() -> Response:
        """Models whose pods report Ready, with the memory they measured; GPU totals."""
        return _json(service.status_json())

    for path, endpoint, model, summary in (
        ("/config", get_config, ConfigBody, "Available models per task and the current selections"),
        ("/status", get_status, StatusBody, "Loaded models and their measured memory"),
    ):
        app.add_api_route(
            f"{PREFIX}{path}",
            endpoint,
            methods=["GET"],
            response_model=model,
            responses=_errors(500, 503),
            summary=summary,
            tags=["models"],
        )


WhatIfQuery = Annotated[
    list[str] | None,
    Query(description="What-if: a task and the model it would select (repeat in pairs)"),
]


@read_router.post(
    "/validate",
    response_model=ValidateBody,
    responses=_errors(400, 404, 500, 503),
    summary="Whether the selections (now, or as if changed) fit in GPU memory",
)
async def validate(
    service: ServiceDep,
    task_type: WhatIfQuery = None,
    model_name: WhatIfQuery = None,
    task_type_camel: Annotated[list[str] | None, Query(alias="taskType")] = None,
    model_name_camel: Annotated[list[str] | None, Query(alias="modelName")] = None,
) -> Response:
    """The budget of the current selections, from the placement plan the operator uses.

    With task_type/model_name pairs (repeatable): the budget as if those were
    selected, plus the plan (per GPU, evictions, CPU fallbacks); nothing is written.
    """
    tasks = [*(task_type or []), *(task_type_camel or [])]
    models = [*(model_name or []), *(model_name_camel or [])]
    if not tasks and not models:
        return _json(service.validate_json())
    return _json(what_if_json(service, tasks, models))


TaskQuery = Annotated[str | None, Query(description="Task type (a task of the catalog)")]
ModelQuery = Annotated[str | None, Query(description="Model (option) name in the catalog")]
WaitQuery = Annotated[
    float | None,
    Query(ge=0, description="Seconds to wait until the model is Ready (0 or absent: don't wait)"),
]


@write_router.post(
    "/select",
    response_model=SelectBody,
    responses=_errors(400, 404, 500, 503),
    summary="Select the model of a task (task_type/model_name or taskType/modelName)",
)
async def select(
    service: ServiceDep,
    task_type: TaskQuery = None,
    model_name: ModelQuery = None,
    task_type_camel: Annotated[
        str | None, Query(alias="taskType", description="Same as task_type")
    ] = None,
    model_name_camel: Annotated[
        str | None, Query(alias="modelName", description="Same as model_name")
    ] = None,
    wait: WaitQuery = None,
) -> SelectBody:
    """Patch (or create) the task's ModelSelection; with `wait`, block until it is loaded."""
    task = _one_of("task_type", task_type, task_type_camel)
    model = _one_of("model_name", model_name, model_name_camel)
    return await service.select(task, model, wait)


TaskPath = Annotated[str, Path(description="Task type (a task of the catalog)")]


@write_router.post(
    "/load/{task_type}",
    response_model=LoadBody,
    responses=_errors(400, 404, 500, 503),
    summary="Load the selected model of a task now (marks the selection wanted)",
)
async def load(service: ServiceDep, task_type: TaskPath, wait: WaitQuery = None) -> LoadBody:
    """Mark the selection wanted (on-demand models load); with `wait`, block until loaded."""
    return await service.load(task_type, wait)


@write_router.post(
    "/unload/{task_type}",
    response_model=LoadBody,
    responses=_errors(400, 404, 500, 503),
    summary="Free the memory of a task's model; the selection stays (on demand, not wanted)",
)
async def unload(service: ServiceDep, task_type: TaskPath) -> LoadBody:
    """Not wanted and on demand: the operator removes the pod; the selection stays."""
    return await service.unload(task_type)


@read_router.get(
    "/events",
    response_class=StreamingResponse,
    summary="Server-sent events: selection, status and sync changes",
    responses={
        200: {
            "description": "An endless text/event-stream",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def stream_events(cache: CacheDep, feed: FeedDep) -> StreamingResponse:
    """`selection`, `status` and `sync` events as they happen (text/event-stream)."""
    return StreamingResponse(
        _event_stream(cache, feed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(cache: CacheDep, feed: FeedDep) -> AsyncIterator[bytes]:
    queue = feed.subscribe()
    try:
        previous = cache.snapshot
        for chunk in events.initial_events(previous):
            yield chunk
        while True:
            try:
                current = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield events.KEEPALIVE
                continue
            if current is None:
                return  # the server is stopping
            for chunk in events.events_between(previous, current):
                yield chunk
            previous = current
    finally:
        feed.unsubscribe(queue)


def _one_of(name: str, snake: str | None, camel: str | None) -> str:
    """The value of a parameter given in either spelling (the original proxy used camelCase)."""
    values = {v for v in (snake, camel) if v}
    if not values:
        raise BadRequest(f"Missing required parameter: {name}")
    if len(values) > 1:
        raise BadRequest(f"Conflicting values for {name}: {', '.join(sorted(values))}")
    return values.pop()
