"""The API's only writes: merge patches of ModelSelection specs, with optimistic concurrency.

Synchronous (the kubernetes client is); the service runs it in a worker
thread. Every patch carries the resourceVersion it was computed from, so a
concurrent writer makes it fail with 409 and it is recomputed from a fresh
read; a missing selection is created (and a create that loses a race is
retried as a patch).
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
from fovea.api.errors import ApiError, BadRequest, ClusterUnavailable
from fovea.domain import constants as c

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
MERGE_PATCH = "application/merge-patch+json"


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
        self,
        name: str,
        fields: Mapping[str, Any],
        cached: Mapping[str, Any] | None,
        create_task: str | None,
    ) -> dict[str, Any] | None:
        """Make `spec` of selection `name` contain `fields`; return the stored object.

        `cached` is the cache's copy (possibly stale: it only saves a read).
        When the selection does not exist it is created for `create_task`, or,
        when that is None, nothing is written and None is returned.
        Raises ClusterUnavailable when the API server cannot be reached.
        """
        current: Mapping[str, Any] | None = cached
        fresh = False  # whether `current` was just read from the API server
        for attempt in range(self.retries):
            last = attempt == self.retries - 1
            try:
                if current is None:
                    current, fresh = self._get(name), True
                    if current is None:
                        if create_task is None:
                            return None
                        return self._create(name, create_task, fields)
                # Only a fresh read may prove there is nothing to do; a cached copy may lag.
                if fresh and _contains(current.get("spec") or {}, fields):
                    return dict(current)
                return self._patch(name, current, fields)
            except ApiException as exc:
                if exc.status in (404, 409) and not last:
                    # Lost a race (changed, created or deleted meanwhile): re-read, recompute.
                    log.info("retrying write of %s after HTTP %s", name, exc.status)
                    current, fresh = None, False
                    continue
                raise translate(exc) from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise ClusterUnavailable() from exc
        raise ApiError(f"ModelSelection '{name}' kept changing; gave up after {self.retries} tries")

    def _custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.clients.get())

    def _get(self, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                self._custom().get_namespaced_custom_object(
                    c.GROUP,
                    c.VERSION,
                    self.namespace,
                    c.SELECTION_PLURAL,
                    name,
                    _preload_content=False,
                    _request_timeout=self._timeout,
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

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

    def _patch(
        self, name: str, current: Mapping[str, Any], fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        version = (current.get("metadata") or {}).get("resourceVersion")
        body = {"metadata": {"resourceVersion": version}, "spec": dict(fields)}
        return _json(
            self._custom().patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.SELECTION_PLURAL,
                name,
                body,
                _content_type=MERGE_PATCH,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        )


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


def _contains(spec: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return all(spec.get(key) == value for key, value in fields.items())


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
