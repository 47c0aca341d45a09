"""The API's only writes: JSON patches of ModelSelection specs that need no resourceVersion.

Synchronous (the kubernetes client is); the service runs it in a worker
thread. A select is a JSON patch (RFC 6902) whose first operation tests that
`spec.task` is the task asked for, then sets the fields. It carries no
resourceVersion, so concurrent writers never conflict: the API server applies
each patch to the object as it is at that moment (and retries internally on
its own storage conflicts). The `test` operation keeps the guarantee that a
write only ever changes the selection of its own task: a selection of
another task answers 409, never a silent overwrite. A missing selection is
created; a create that loses a race to another create becomes a patch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.api.clients import ClientSource
from fovea.api.confirm import read_object
from fovea.api.errors import ApiError, BadRequest, ClusterUnavailable, TaskMismatch, WriteConflict
from fovea.domain import constants as c

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
JSON_PATCH = "application/json-patch+json"


class SelectionWriter:
    """Patches or creates ModelSelections in one namespace."""

    def __init__(
        self,
        clients: ClientSource,
        namespace: str,
        catalog: str,
        retries: int = 5,
        timeout_s: float = 10.0,
    ) -> None:
        self.clients = clients
        self.namespace = namespace
        self.catalog = catalog
        self.retries = retries
        self._timeout = (CONNECT_TIMEOUT_S, timeout_s)

    def set_spec(
        self, name: str, task: str, fields: Mapping[str, Any], create: bool
    ) -> dict[str, Any] | None:
        """Make `spec` of selection `name` (of task `task`) contain `fields`; return it.

        When the selection does not exist it is created for `task` if `create`,
        else nothing is written and None is returned. Raises TaskMismatch when
        the selection belongs to another task, ClusterUnavailable when the API
        server cannot be reached.
        """
        for attempt in range(self.retries):
            try:
                try:
                    return self._patch(name, task, fields)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                if not create:
                    return None
                return self._create(name, task, fields)
            except ApiException as exc:
                if exc.status == 422:
                    self._check_task(name, task)  # a failed `test`: say whose selection it is
                if exc.status == 409 and attempt < self.retries - 1:
                    # Only a create answers 409 (another create won): patch what it made.
                    log.info("retrying write of %s after HTTP 409", name)
                    continue
                raise translate(exc) from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise ClusterUnavailable() from exc
        raise WriteConflict(name, self.retries)

    def _custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.clients.get())

    def _check_task(self, name: str, task: str) -> None:
        """Raise TaskMismatch when selection `name` exists for a task other than `task`."""
        try:
            stored = read_object(
                self.clients, self.namespace, c.SELECTION_PLURAL, name, self._timeout
            )
        except ApiException:
            return  # unreadable: the original refusal stands
        if stored is None:
            return  # gone meanwhile: the original refusal stands
        owner = (stored.get("spec") or {}).get("task")
        if owner != task:
            raise TaskMismatch(name, str(owner), task)

    def _create(self, name: str, task: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.SELECTION_KIND,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"task": task, "catalog": self.catalog, **fields},
        }
        return _json(
            self._custom().create_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.SELECTION_PLURAL,
                body,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        )

    def _patch(self, name: str, task: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return _json(
            self._custom().patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.SELECTION_PLURAL,
                name,
                spec_patch(task, fields),
                _content_type=JSON_PATCH,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        )


def spec_patch(task: str, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch: `spec.task` must be `task`; then each field is set (added or replaced)."""
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/spec/task", "value": task}]
    ops.extend(
        {"op": "add", "path": f"/spec/{key}", "value": value} for key, value in fields.items()
    )
    return ops


def translate(exc: ApiException) -> ApiError:
    """An API server's refusal as the API's error."""
    message = _server_message(exc)
    if exc.status in (None, 0) or (exc.status or 0) >= 500:
        return ClusterUnavailable()
    if exc.status == 422:
        return BadRequest(f"Rejected by the cluster: {message}")
    if exc.status in (401, 403):
        return ApiError(f"Not allowed to update ModelSelections: {message}")
    return ApiError(f"Failed to update model selection: {message}")


def _json(response: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return data


def _server_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
