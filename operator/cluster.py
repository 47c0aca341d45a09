"""The operator's thin I/O adapter: read a World, apply Actions.

Reads are lists of raw JSON (no model deserialisation: it is the hot path);
every write is idempotent (create-or-409, delete-or-404, merge patches).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from fovea.domain import constants as c
from fovea.domain.resources import CatalogSpec, SelectionSpec
from fovea.operator.reconcile import Actions, Event, Key, Selection, World

log = logging.getLogger(__name__)

WRITERS = 8  # concurrent writes per pass (the client's connection pool matches)
MODEL_POD_SELECTOR = (
    f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD},{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
)


class Cluster:
    def __init__(self, api: client.ApiClient, namespaces: list[str], service_account: str) -> None:
        self.api = api
        self.namespaces = namespaces  # empty: all namespaces
        self.service_account = service_account
        self._core = client.CoreV1Api(api)
        self._rbac = client.RbacAuthorizationV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._identities: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="apply")

    # --- reads -----------------------------------------------------------

    def snapshot(self, now: datetime) -> World:
        """Everything the planner needs, read in one go (raw JSON: the hot path)."""
        catalogs = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): o.get("spec") or {}
            for o in self._list_custom(c.CATALOG_PLURAL)
        }
        selections = [_selection(o) for o in self._list_custom(c.SELECTION_PLURAL)]
        nodes = _items(self._core.list_node(_preload_content=False))
        pods = self._list_pods()
        secrets = frozenset(self._existing_secrets(catalogs, selections))
        return World(catalogs, selections, nodes, pods, secrets, now)

    def _list_custom(self, plural: str) -> list[dict[str, Any]]:
        if not self.namespaces:
            return _items(
                self._custom.list_cluster_custom_object(
                    c.GROUP, c.VERSION, plural, _preload_content=False
                )
            )
        return [
            item
            for ns in self.namespaces
            for item in _items(
                self._custom.list_namespaced_custom_object(
                    c.GROUP, c.VERSION, ns, plural, _preload_content=False
                )
            )
        ]

    def _list_pods(self) -> list[dict[str, Any]]:
        if not self.namespaces:
            return _items(
                self._core.list_pod_for_all_namespaces(
                    label_selector=MODEL_POD_SELECTOR, _preload_content=False
                )
            )
        return [
            item
            for ns in self.namespaces
            for item in _items(
                self._core.list_namespaced_pod(
                    ns, label_selector=MODEL_POD_SELECTOR, _preload_content=False
                )
            )
        ]

    def _existing_secrets(
        self, catalogs: Mapping[Key, Mapping[str, Any]], selections: list[Selection]
    ) -> Iterable[Key]:
        wanted: set[Key] = set()
        for sel in selections:
            raw = catalogs.get((sel.namespace, sel.spec.catalog)) if sel.spec else None
            if raw is None or sel.spec is None or not sel.spec.model:
                continue
            try:
                option = CatalogSpec.model_validate(raw).option(sel.spec.task, sel.spec.model)
            except ValidationError:
                continue
            if option is not None and option.api_key_secret:
                wanted.add((sel.namespace, option.api_key_secret))
        for ns, name in sorted(wanted):
            try:
                self._core.read_namespaced_secret(name, ns, _preload_content=False)
                yield (ns, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # --- writes ----------------------------------------------------------

    def apply(self, actions: Actions) -> None:
        """Carry out the actions; each one is harmless to repeat.

        Groups run in order (deletions free GPU memory before anything new is
        created); within a group the calls run concurrently.
        """
        for ns in sorted(actions.namespaces - self._identities):
            self._ensure_model_pod_identity(ns)
        self._each(self._delete_pod, actions.delete)
        self._each(self._create_pod, actions.create)
        self._each(self._patch_status, sorted(actions.status.items()))
        self._each(self._post_event, actions.events)

    def _each(self, call: Callable[[Any], None], items: Sequence[Any]) -> None:
        if len(items) <= 1:
            for item in items:
                call(item)
            return
        list(self._pool.map(call, items))  # re-raises the first failure

    def _delete_pod(self, key: Key) -> None:
        ns, name = key
        log.info("deleting pod %s/%s", ns, name)
        with _tolerating(404):
            self._core.delete_namespaced_pod(name, ns)

    def _create_pod(self, pod: dict[str, Any]) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        log.info("creating pod %s/%s", ns, name)
        body: Any = pod  # the client takes plain dicts as bodies
        with _tolerating(409):
            self._core.create_namespaced_pod(ns, body)

    def _patch_status(self, item: tuple[Key, dict[str, Any]]) -> None:
        (ns, name), status = item
        with _tolerating(404):  # the selection was deleted meanwhile
            self._custom.patch_namespaced_custom_object_status(
                c.GROUP,
                c.VERSION,
                ns,
                c.SELECTION_PLURAL,
                name,
                {"status": status},
                _content_type="application/merge-patch+json",
            )

    def _ensure_model_pod_identity(self, ns: str) -> None:
        """A ServiceAccount per namespace that may only patch ModelSelection status."""
        sa = self.service_account
        meta = {"name": sa, "namespace": ns, "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY}}
        account: Any = {"metadata": meta}
        with _tolerating(409):
            self._core.create_namespaced_service_account(ns, account)
        role: Any = {
            "metadata": meta,
            "rules": [
                {
                    "apiGroups": [c.GROUP],
                    "resources": [f"{c.SELECTION_PLURAL}/status"],
                    "verbs": ["patch"],
                }
            ],
        }
        with _tolerating(409):
            self._rbac.create_namespaced_role(ns, role)
        binding: Any = {
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        }
        with _tolerating(409):
            self._rbac.create_namespaced_role_binding(ns, binding)
        self._identities.add(ns)

    def _post_event(self, event: Event) -> None:
        body: Any = {
            "metadata": {"generateName": f"{event.name}.", "namespace": event.namespace},
            "involvedObject": {
                "apiVersion": c.API_VERSION,
                "kind": c.SELECTION_KIND,
                "name": event.name,
                "namespace": event.namespace,
                "uid": event.uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message,
            "source": {"component": "fovea-models-operator"},
            "reportingComponent": "fovea.dev/operator",
            "reportingInstance": "fovea-models-operator",
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(event.namespace, body)
        except ApiException as exc:  # an Event is best effort; the status says it too
            log.warning("could not post Event %s: %s", event.reason, exc.reason)


def _selection(obj: Mapping[str, Any]) -> Selection:
    meta = obj["metadata"]
    spec: SelectionSpec | None
    error = None
    try:
        spec = SelectionSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        spec, error = None, str(exc.errors()[0].get("msg"))
    return Selection(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        spec=spec,
        status=obj.get("status") or {},
        spec_error=error,
    )


def _items(response: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(response.data)["items"]
    return items


@contextmanager
def _tolerating(status: int) -> Iterator[None]:
    """Treat one HTTP status as success: the writes are idempotent."""
    try:
        yield
    except ApiException as exc:
        if exc.status != status:
            raise
