"""The OpenAI routes of an engine-backed model pod: requests passed through to the engine.

`POST /v1/chat/completions` and `POST /v1/completions` go to the engine child
(vLLM, SGLang) with the body unchanged except its `model`, which becomes the
name the engine serves the model under (the weights' path or id). The answer
comes back as the engine sends it: status code and content type as they are,
the body streamed chunk by chunk as it arrives (`aiter_raw`), never buffered,
so a `"stream": true` request's Server-Sent Events reach the client token by
token. Errors of our own are `{"error": "<message>"}`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from fovea.model_pod.adapters.adapter_engine import REQUEST_TIMEOUT_SECONDS, EngineAdapter

OPENAI_PATHS = ("/v1/chat/completions", "/v1/completions")
CONNECT_TIMEOUT_SECONDS = 10.0


class PassThroughError(Exception):
    """A request that is not passed on: the status and message to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def engine_client() -> httpx.AsyncClient:
    """The client that talks to the engine child (one per app, closed with it)."""
    timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    return httpx.AsyncClient(timeout=timeout)


def engine_body(raw: bytes, served_model: str) -> bytes:
    """The body for the engine: the client's JSON object with `model` set to `served_model`."""
    try:
        body: Any = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise PassThroughError(400, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise PassThroughError(400, "body must be a JSON object")
    body["model"] = served_model
    return json.dumps(body).encode()


async def forward(
    client: httpx.AsyncClient,
    adapter: EngineAdapter,
    path: str,
    raw: bytes,
    headers: dict[str, str],
) -> Response:
    """Send one OpenAI request to the engine; stream its answer back as it comes.

    `headers` are added to the answer (who gave it).
    """
    request = client.build_request(
        "POST",
        adapter.base_url + path,
        content=engine_body(raw, adapter.served_model),
        headers={"Content-Type": "application/json"},
    )
    try:
        upstream = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise PassThroughError(
            502, f"{adapter.engine.name} did not answer: {type(exc).__name__}: {exc}"
        ) from exc
    passed = dict(headers)
    content_type = upstream.headers.get("content-type")
    if content_type:
        passed["Content-Type"] = content_type
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=passed,
        background=BackgroundTask(upstream.aclose),
    )


def error(status: int, message: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)
