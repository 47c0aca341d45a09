"""Session leases: `POST /api/models/lease/{task_type}?ttl=300` and `DELETE` to end it.

The annotation tool renews the lease while a person has the task open; while
it is live, the operator does not evict the task's model for a selection of
lower or equal priority (`fovea.domain.leases`). Each lease is a Kubernetes
Lease in the API's namespace (`fovea-session-<selection>`): it survives API
restarts and shows in `kubectl get leases`. With a bearer token configured,
these routes require it, like the other writes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from starlette.exceptions import HTTPException as StarletteHTTPException

from fovea.api.deps import CacheDep, ServiceDep
from fovea.api.errors import ApiError, CatalogUnreadable, InvalidTaskType
from fovea.api.routes_models import PREFIX, _errors
from fovea.domain import leases
from fovea.domain.resources import selection_name

router = APIRouter(prefix=PREFIX, tags=["leases"])

TaskPath = Annotated[str, Path(description="Task type (a task of the catalog)")]


class LeaseFailed(ApiError):
    status_code = 503

    def __init__(self, reason: str) -> None:
        super().__init__(f"Lease not written: {reason}")


@router.post(
    "/lease/{task_type}",
    responses=_errors(400, 500, 503),
    summary="Hold (or renew) a session lease on a task's model for `ttl` seconds",
)
async def hold(
    service: ServiceDep,
    cache: CacheDep,
    task_type: TaskPath,
    ttl: Annotated[
        int, Query(ge=leases.MIN_TTL_S, le=leases.MAX_TTL_S, description="Seconds it lasts")
    ] = 300,
) -> dict[str, Any]:
    """Create or renew the task's Lease: its model is not evicted for lower or equal priority."""
    namespace, selection = _selection_of(service, task_type)
    body = leases.lease_body(selection, task_type, ttl, datetime.now(UTC))
    api = client.CoordinationV1Api(cache.clients.get())
    stored = await asyncio.to_thread(_create_or_renew, api, namespace, body)
    return {
        "status": "success",
        "task_type": task_type,
        "lease": body["metadata"]["name"],
        "namespace": namespace,
        "ttl": ttl,
        "expires_at": leases.expiry_text(stored),
        "message": "Session lease held",
    }


@router.delete(
    "/lease/{task_type}",
    responses=_errors(400, 500, 503),
    summary="End the task's session lease",
)
async def end(service: ServiceDep, cache: CacheDep, task_type: TaskPath) -> dict[str, Any]:
    """Delete the task's Lease (no lease: nothing to do, still a success)."""
    namespace, selection = _selection_of(service, task_type)
    name = leases.lease_name(selection)
    api = client.CoordinationV1Api(cache.clients.get())
    try:
        await asyncio.to_thread(api.delete_namespaced_lease, name, namespace)
        message = "Session lease ended"
    except ApiException as exc:
        if exc.status != 404:
            raise LeaseFailed(exc.reason or str(exc.status)) from exc
        message = "No session lease"
    return {"status": "success", "task_type": task_type, "lease": name, "message": message}


@router.api_route(
    "/lease/{task_type}",
    methods=["GET", "PUT", "PATCH", "OPTIONS"],
    include_in_schema=False,
)
async def other_method(task_type: TaskPath) -> None:
    """Any other method: 405 naming both methods the path has (each route alone names one)."""
    raise StarletteHTTPException(405, "Method Not Allowed", headers={"Allow": "POST, DELETE"})


def _selection_of(service: ServiceDep, task: str) -> tuple[str, str]:
    state = service.synced_snapshot().state
    if state.catalog is None:
        raise CatalogUnreadable(state.catalog_error or "No ModelCatalog")
    if task not in state.catalog.tasks:
        raise InvalidTaskType(task)
    sel = state.selection_for(task)
    return state.namespace, sel.name if sel is not None else selection_name(task)


def _create_or_renew(
    api: client.CoordinationV1Api, namespace: str, body: dict[str, Any]
) -> dict[str, Any]:
    name = body["metadata"]["name"]
    lease: Any = body  # the client takes plain dicts as bodies
    try:
        created = api.create_namespaced_lease(namespace, lease)
        return dict(api.api_client.sanitize_for_serialization(created))
    except ApiException as exc:
        if exc.status != 409:
            raise LeaseFailed(exc.reason or str(exc.status)) from exc
    spec = {k: v for k, v in body["spec"].items() if k != "acquireTime"}  # renewal
    try:
        renewed = api.patch_namespaced_lease(name, namespace, {"spec": spec})
    except ApiException as exc:
        raise LeaseFailed(exc.reason or str(exc.status)) from exc
    return dict(api.api_client.sanitize_for_serialization(renewed))
