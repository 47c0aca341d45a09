"""The model pod's HTTP surface: probes, predict and a self-description.

- `GET /healthz`: 200 while the process runs, whatever the model's state
  (liveness: a failed model is reported, not restarted into the same failure).
- `GET /readyz`: 200 only when the model is loaded and warm; else 503 with the
  state and reason (readiness and startup probes). 503 "draining" from the
  moment SIGTERM arrives (`drain`), while requests are still answered.
- `POST /predict`: one request for the model; JSON in the framework's shape
  (see each adapter), or raw image bytes (`image/*` or
  `application/octet-stream`) for detectors. 503 while not ready, 400 on bad
  input, 413 on a body over MAX_BODY_BYTES (refused from its Content-Length
  before any of it is read; a chunked body is read only up to the limit),
  errors as `{"error": "<message>"}`. Every answer, errors too, names who
  gave it: `X-Fovea-Model` (the catalog's option) and `X-Fovea-Pod`.
- `POST /v1/chat/completions`, `POST /v1/completions`: an engine-backed model
  (vLLM, SGLang) passes OpenAI requests through to its engine and streams
  the answer back unbuffered (`passthrough`); other models answer 404.
- `GET /info`: who this is and the latest runtime report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fovea.model_pod import passthrough
from fovea.model_pod.adapters.adapter_engine import EngineAdapter
from fovea.model_pod.adapters.base import PredictError
from fovea.model_pod.drain import DRAINING_REASON, Drain
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import ModelService, NotReady

log = logging.getLogger("fovea.model_pod.server")

MAX_BODY_BYTES = 32 * 1024 * 1024
HEADER_MODEL = "X-Fovea-Model"
HEADER_POD = "X-Fovea-Pod"


class BodyTooLarge(Exception):
    """The request body is over MAX_BODY_BYTES (answered 413)."""

    def __init__(self) -> None:
        super().__init__(f"request body over {MAX_BODY_BYTES} bytes")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def who_answers(identity: Identity) -> dict[str, str]:
    """The headers naming the model and the pod that gave an answer (those it knows)."""
    headers = {HEADER_MODEL: identity.model, HEADER_POD: identity.pod_name}
    return {name: value for name, value in headers.items() if value}


def declared_too_large(content_length: str | None, limit: int = MAX_BODY_BYTES) -> bool:
    """Whether a Content-Length header announces a body over `limit` (or is not a number)."""
    if content_length is None:
        return False
    try:
        return int(content_length) > limit or int(content_length) < 0
    except ValueError:
        return True


async def _bounded_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused as soon as it is announced or read past `limit`."""
    if declared_too_large(request.headers.get("content-length"), limit):
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def _payload(request: Request) -> dict[str, Any]:
    body = await _bounded_body(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        return {"image_bytes": body}
    try:
        payload = json.loads(body or b"{}")
    except json.JSONDecodeError as exc:
        raise PredictError(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise PredictError("body must be a JSON object")
    return payload


def create_app(
    service: ModelService,
    on_shutdown: Callable[[], None] | None = None,
    drain: Drain | None = None,
) -> FastAPI:
    """The FastAPI app serving one ModelService; `on_shutdown` runs when the server stops;
    `drain` turns /readyz to 503 while the server drains (`DrainingServer`).

    Cleanup belongs here rather than after `uvicorn.Server.run()`: uvicorn
    re-raises SIGTERM once it has shut down, so code after `run()` never runs.
    """

    engine = service.adapter if isinstance(service.adapter, EngineAdapter) else None
    client = passthrough.engine_client() if engine is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if client is not None:
            await client.aclose()
        if on_shutdown is not None:
            await run_in_threadpool(on_shutdown)

    app = FastAPI(
        title="fovea-models model server",
        description="Probes and predict for one model (see docs/model-pod.md).",
        lifespan=lifespan,
    )

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "state": service.state}

    @app.get("/readyz", response_model=None)
    def readyz() -> dict[str, Any] | JSONResponse:
        service.check()
        if drain is not None and drain.draining:
            return JSONResponse(
                status_code=503,
                content={"ready": False, "state": service.state, "reason": DRAINING_REASON},
            )
        if service.ready:
            return {"ready": True, "state": service.state}
        return JSONResponse(
            status_code=503,
            content={"ready": False, "state": service.state, "reason": service.reason},
        )

    @app.post("/predict", response_model=None)
    async def predict(request: Request) -> JSONResponse:
        answered: list[Identity] = []  # the model that computed it (a warm pod may switch)
        answer = await _predict(request, answered)
        answer.headers.update(who_answers(answered[0] if answered else service.identity))
        return answer

    async def _predict(request: Request, answered: list[Identity]) -> JSONResponse:
        try:
            payload = await _payload(request)
            # The forward pass blocks: run it off the event loop so probes still answer.
            answer, identity = await run_in_threadpool(service.answer, payload)
            answered.append(identity)
            return JSONResponse(jsonable_encoder(answer))
        except BodyTooLarge as exc:
            return _error(413, str(exc))
        except NotReady as exc:
            return _error(503, f"model not ready: {exc}")
        except PredictError as exc:
            return _error(400, str(exc))
        except Exception as exc:  # the contract's error shape, never a bare 500 page
            log.exception("predict failed")
            return _error(500, f"predict failed: {type(exc).__name__}: {exc}")

    async def openai(request: Request) -> Response:
        headers = who_answers(service.identity)
        if engine is None or client is None:
            framework = service.identity.framework
            message = (
                f"{request.url.path} is served by engine-backed models only (this is {framework})"
            )
            return passthrough.error(404, message, headers)
        service.check()
        if not service.ready:
            reason = service.reason or f"model is {service.state.lower()}"
            return passthrough.error(503, f"model not ready: {reason}", headers)
        try:
            raw = await _bounded_body(request)
            answer = await passthrough.forward(client, engine, request.url.path, raw, headers)
        except BodyTooLarge as exc:
            return passthrough.error(413, str(exc), headers)
        except passthrough.PassThroughError as exc:
            return passthrough.error(exc.status, str(exc), headers)
        if service.reporter is not None:
            service.reporter.touch()
        return answer

    for path in passthrough.OPENAI_PATHS:
        app.add_api_route(path, openai, methods=["POST"], response_model=None)

    @app.get("/info")
    def info() -> dict[str, Any]:
        identity = service.identity
        report = service.reporter.current if service.reporter else None
        report = report or service.report
        return {
            "task": identity.spec.task,
            "model": identity.model,
            "framework": identity.framework,
            "plannedDevice": identity.planned_device,
            "selection": identity.selection,
            "namespace": identity.namespace,
            "runtime": report.model_dump(by_alias=True, mode="json", exclude_none=True),
        }

    return app
