"""Routes for people and the command line (`fovea-models ps`, `describe`, `logs`, `validate`).

- GET  /api/models/tasks: every task, its options and its ModelSelection (spec, status, load)
- GET  /api/models/describe?task_type=T: one task as above, plus its Kubernetes Events
- GET  /api/models/logs?task_type=T[&follow=true][&tail_lines=N]: the model pod's log

They reach further into the cluster than the contract's routes (events and
pod logs), so when a bearer token is configured they require it, like writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.api import inspect
from fovea.api.deps import CacheDep, ServiceDep
from fovea.api.errors import ApiError
from fovea.api.responses import to_json
from fovea.api.routes_models import PREFIX, _errors
from fovea.api.schemas import ErrorBody

router = APIRouter(prefix=PREFIX, tags=["inspect"])

CHUNK = 16 * 1024


class NoModelPod(ApiError):
    status_code = 404

    def __init__(self, task: str, phase: str) -> None:
        super().__init__(f"No model pod for task '{task}' (phase {phase})")


class PodLogUnavailable(ApiError):
    status_code = 502

    def __init__(self, pod: str, reason: str) -> None:
        super().__init__(f"Log of pod '{pod}' unavailable: {reason}")


TaskQuery = Annotated[str, Query(description="Task type (a task of the catalog)")]


@router.get("/tasks", responses=_errors(500, 503), summary="Every task, in full")
async def tasks(service: ServiceDep) -> Response:
    """Every task of the catalog: options, ModelSelection spec and status, load outcome."""
    snap = service.readable_snapshot()
    return Response(to_json(inspect.tasks_view(snap.state)), media_type="application/json")


@router.get(
    "/describe",
    responses=_errors(400, 500, 503),
    summary="One task: options, ModelSelection spec, status and conditions, and Events",
)
async def describe(service: ServiceDep, cache: CacheDep, task_type: TaskQuery) -> Response:
    """The task as /tasks shows it, plus the Events of its selection and of its model pod."""
    snap = service.readable_snapshot()
    body = inspect.task_view(snap.state, task_type)
    objects = [name for name in (body["selection"], _pod_of(body)) if name]
    core = client.CoreV1Api(cache.clients.get())
    try:
        body["events"] = await asyncio.to_thread(_events, core, snap.state.namespace, objects)
    except ApiException as exc:  # say why, and still describe the rest
        body["events"] = []
        body["events_error"] = f"Events unavailable: {_reason(exc)}"
    return Response(to_json(body), media_type="application/json")


@router.get(
    "/logs",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **_errors(400, 404, 500, 503),
        502: {"model": ErrorBody, "description": "The pod's log could not be read"},
    },
    summary="The log of the task's model pod (streamed with follow=true)",
)
async def logs(
    service: ServiceDep,
    cache: CacheDep,
    task_type: TaskQuery,
    follow: Annotated[bool, Query(description="Keep streaming new lines")] = False,
    tail_lines: Annotated[int | None, Query(ge=1, description="Only the last N lines")] = None,
) -> StreamingResponse:
    """Read through the Kubernetes pod-log endpoint (the node's kubelet; on the local
    cluster, the node agent's log endpoint)."""
    snap = service.readable_snapshot()
    view = inspect.task_view(snap.state, task_type)
    pod = _pod_of(view)
    if pod is None:
        phase = (view["status"] or {}).get("phase", "no selection")
        raise NoModelPod(task_type, phase)
    namespace = snap.state.namespace
    core = client.CoreV1Api(cache.clients.get())
    try:
        stream = await asyncio.to_thread(_open_pod_log, core, namespace, pod, follow, tail_lines)
    except ApiException as exc:
        raise PodLogUnavailable(pod, _reason(exc)) from exc
    return StreamingResponse(_iterate_in_thread(stream), media_type="text/plain; charset=utf-8")


# --- Kubernetes reads (run in a thread) ---------------------------------------------------------


def _pod_of(view: dict[str, Any]) -> str | None:
    status = view["status"] or {}
    runtime = status.get("runtime") or {}
    pod = status.get("pod") or runtime.get("pod")
    return str(pod) if pod else None


def _events(core: client.CoreV1Api, namespace: str, objects: list[str]) -> list[dict[str, Any]]:
    """Events of the named objects (the selection, its pod), oldest first."""
    out: list[dict[str, Any]] = []
    for name in objects:
        items = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        ).items
        for e in items:
            when = e.last_timestamp or e.event_time or e.first_timestamp
            out.append(
                {
                    "type": e.type,
                    "reason": e.reason,
                    "object": f"{e.involved_object.kind}/{e.involved_object.name}",
                    "message": e.message,
                    "count": e.count or 1,
                    "last_seen": when.isoformat() if when is not None else None,
                }
            )
    return sorted(out, key=lambda e: e["last_seen"] or "")


def _open_pod_log(
    core: client.CoreV1Api, namespace: str, pod: str, follow: bool, tail_lines: int | None
) -> Any:
    """The pod-log endpoint's open response (urllib3), not yet read."""
    kwargs: dict[str, Any] = {"follow": follow, "_preload_content": False}
    if tail_lines is not None:
        kwargs["tail_lines"] = tail_lines
    return core.read_namespaced_pod_log(pod, namespace, **kwargs)


async def _iterate_in_thread(response: Any) -> AsyncIterator[bytes]:
    """The response's chunks as they come, read in a worker thread.

    When the client leaves mid-stream, a worker may be blocked reading: closing
    the response from the event loop would wait for that read (the buffered
    reader's lock) and freeze every route. The socket is shut down first, which
    ends the blocked read, and the close itself runs in a worker too."""
    chunks: Iterator[bytes] = response.stream(CHUNK, decode_content=True)
    finished = False
    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                finished = True
                return
            if chunk:
                yield chunk
    finally:
        if not finished:
            _shut_down(response)
        await asyncio.shield(asyncio.to_thread(response.close))


def _shut_down(response: Any) -> None:
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _reason(exc: ApiException) -> str:
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or exc.reason or exc.status)
