"""The inference routes: a task's requests to the model selected for it (docs/inference.md).

- `POST /api/models/predict/{task_type}`: the body, unchanged, to the task's
  model pod (`/predict`); its answer streamed back with `X-Fovea-Model` and
  `X-Fovea-Pod`.
- `GET /api/models/inference`: per task, requests held now and the last minute's answers.
- OpenAI-compatible, for engine-backed models (vLLM, SGLang): `GET /v1/models`
  (every selected option), `POST /v1/chat/completions` and `/v1/completions`,
  routed by the body's `model` (an option name); streamed answers pass through
  token by token. Errors there take OpenAI's shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from fovea.api.errors import shown
from fovea.api.gateway import BodyTooLarge, Forward, Gateway, contract_error, read_body
from fovea.domain import constants as c
from fovea.domain.conditions import Phase
from fovea.domain.endpoints import service_name

router = APIRouter()
read_router = APIRouter()
TaskPath = Annotated[str, Path(description="Task type (a task of the catalog)")]


async def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]


@router.post(
    "/api/models/predict/{task_type}",
    summary="Run the task's selected model on the body (held while it loads)",
    responses={
        200: {"description": "The model pod's answer, as it gave it"},
        400: {"description": "The model refused the input (its own 4xx is passed through)"},
        404: {"description": "Unknown task"},
        409: {"description": "No model selected for the task"},
        413: {"description": "Body over the model pod's limit (nothing forwarded)"},
        422: {"description": "The selected option is an external API (no pod)"},
        429: {"description": "Too many requests held for the task; see Retry-After"},
        502: {"description": "The model pod failed during the request"},
        503: {"description": "The model failed to load, or is not Ready in time"},
    },
)
async def predict(task_type: TaskPath, request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway  # (no dependency to solve: the hot path)
    try:
        body = await read_body(request)
    except BodyTooLarge:
        return contract_error(413, _too_large(), {})
    forward = Forward(task_type, "/predict", body, _headers(request), request.is_disconnected)
    return await gateway.forward(forward)


@read_router.get("/api/models/inference", summary="Requests held and answered, per task")
async def inference_stats(gateway: GatewayDep) -> dict[str, Any]:
    """Per task: requests held and answered (the last minute), and the endpoints the route sees."""
    state = gateway.cache.snapshot.state
    tasks: dict[str, dict[str, Any]] = {t: dict(v) for t, v in gateway.metrics.stats().items()}
    for task, sel in state.by_task.items():
        endpoints = state.endpoints.get(service_name(sel.name), ())
        tasks.setdefault(task, {})["endpoints"] = [
            {
                "pod": ep.pod,
                "model": state.pod_models.get(ep.pod),
                "address": ep.url,
                "ready": ep.ready,
                "terminating": ep.terminating,
            }
            for ep in endpoints
        ]
    return {"tasks": tasks}


@router.get("/v1/models", summary="OpenAI: the selected options, one per task")
async def list_models(gateway: GatewayDep) -> dict[str, Any]:
    state = gateway.cache.snapshot.state
    data = []
    for task, sel in sorted(state.by_task.items()):
        if sel.spec.model:
            data.append(
                {
                    "id": sel.spec.model,
                    "object": "model",
                    "owned_by": c.MANAGED_BY,
                    "task": task,
                    "ready": sel.status.phase in (Phase.READY, Phase.CPU_FALLBACK)
                    and sel.status.model == sel.spec.model,
                }
            )
    return {"object": "list", "data": data}


OPENAI_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The engine's answer; with `stream: true`, its events as they come"},
    400: {"description": "No JSON body, or no `model` in it; or the engine refused it"},
    404: {"description": "No task has that model selected (GET /v1/models lists them)"},
    413: {"description": "Body over the model pod's limit (nothing forwarded)"},
    429: {"description": "Too many requests held for the task; see Retry-After"},
    502: {"description": "The model pod failed during the request"},
    503: {"description": "The model failed to load, or is not Ready in time"},
}


@router.post(
    "/v1/chat/completions",
    summary="OpenAI: chat, routed by `model`",
    responses=OPENAI_RESPONSES,
)
async def chat_completions(gateway: GatewayDep, request: Request) -> Response:
    return await _openai(gateway, request, "/v1/chat/completions")


@router.post(
    "/v1/completions",
    summary="OpenAI: completions, routed by `model`",
    responses=OPENAI_RESPONSES,
)
async def completions(gateway: GatewayDep, request: Request) -> Response:
    return await _openai(gateway, request, "/v1/completions")


async def _openai(gateway: Gateway, request: Request, path: str) -> Response:
    try:
        body = await read_body(request)
    except BodyTooLarge:
        return openai_error(413, _too_large(), {})
    try:
        payload = json.loads(body or b"null")
    except json.JSONDecodeError as exc:
        return openai_error(400, f"body is not JSON: {exc}", {})
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(model, str) or not model:
        return openai_error(400, 'the body needs "model": the name of a selected option', {})
    state = gateway.cache.snapshot.state
    tasks = [t for t, sel in sorted(state.by_task.items()) if sel.spec.model == model]
    if not tasks:
        selected = sorted({s.spec.model for s in state.by_task.values() if s.spec.model})
        return openai_error(
            404,
            f"No task has the model '{shown(model)}' selected "
            f"(selected: {', '.join(selected) or 'none'}; GET /v1/models lists them)",
            {"code": "model_not_found"},
        )
    forward = Forward(tasks[0], path, body, _headers(request), request.is_disconnected)
    return await gateway.forward(forward, openai_error)


def openai_error(status: int, message: str, extra: Mapping[str, str]) -> Response:
    """OpenAI's error shape, so OpenAI clients show the message."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    error = {"message": message, "type": kind, "code": extra.get("code") or str(status)}
    if extra.get("phase"):
        error["phase"] = extra["phase"]
    headers = {"Retry-After": extra["retry_after"]} if extra.get("retry_after") else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _too_large() -> str:
    return f"Request body over {c.MAX_PREDICT_BODY_BYTES} bytes (the model pod's limit)"
