"""The operator's watch-fed view of the cluster: one list, then watches, per kind.

Every kind the planner reads (catalogs, selections, nodes, model pods, the
pods bound to nodes, namespaces, session Leases, the selections' Services,
and for DRA the DeviceClasses, ResourceSlices and managed ResourceClaims) is
kept by a `fovea.watch.Watcher` thread (the same list-then-watch loop the
API's cache runs), so a planning pass reads memory, not the API server. The
watchers relist every `resync_s` as a safety net: a missed event is repaired
by the next list, not by the planner. Each change that a plan may depend on
calls `on_change` (which wakes the planner).

The executor writes through: the object a successful create, patch or
delete returns is stored at once (unless the watch already delivered a
newer one), so the next pass does not repeat a write whose watch event has
not arrived yet.

A pass plans only from a synced cache: while any kind is not listed yet, or
its watch is broken, `snapshot` raises `NotSynced` (the pass waits; nothing
is written from a partial view).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from fovea.domain import constants as c
from fovea.domain import dra, leases
from fovea.domain.endpoints import ENDPOINT_SELECTOR
from fovea.watch import Clients, Source, Watcher

CATALOGS = "catalogs"
SELECTIONS = "selections"
NODES = "nodes"
PODS = "pods"  # the model-server pods
NODE_PODS = "node-pods"  # every pod bound to a node and not finished
NAMESPACES = "namespaces"
LEASES = "session-leases"
SERVICES = "services"
DEVICE_CLASSES = "deviceclasses"
SLICES = "resourceslices"
CLAIMS = "resourceclaims"
KINDS = (
    CATALOGS,
    SELECTIONS,
    NODES,
    PODS,
    NODE_PODS,
    NAMESPACES,
    LEASES,
    SERVICES,
    DEVICE_CLASSES,
    SLICES,
    CLAIMS,
)
MODEL_POD_SELECTOR = (
    f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD},{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
)
# Pods that hold a node's resources, as the scheduler counts them.
NODE_POD_SELECTOR = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
RESOURCE_GROUP, RESOURCE_VERSION = dra.API_VERSION.split("/")

Raw = dict[str, Any]
Method = Callable[[client.ApiClient], Callable[..., Any]]


class NotSynced(RuntimeError):
    """The cache cannot vouch for some kind yet (not listed, or its watch is broken)."""


@dataclass(frozen=True)
class Kind:
    """How one kind is listed and watched: cluster-wide, or once per namespace."""

    name: str
    every: Method  # the cluster-wide list
    one: Method | None = None  # the per-namespace list (None: a cluster-scoped kind)
    args: tuple[Any, ...] = ()  # before the namespace
    selector: tuple[tuple[str, Any], ...] = ()
    optional: bool = False  # 403/404: an empty kind (an API or a right the cluster lacks)
    namespaces_too: bool = True  # False: always cluster-wide (nodes, DRA's cluster objects)


def _custom(api: client.ApiClient) -> Any:
    return client.CustomObjectsApi(api)


def _core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


def _coordination(api: client.ApiClient) -> Any:
    return client.CoordinationV1Api(api)


def kinds() -> tuple[Kind, ...]:
    """What the planner reads (`fovea.operator.cluster.Cluster.snapshot`)."""
    fovea, resource = (c.GROUP, c.VERSION), (RESOURCE_GROUP, RESOURCE_VERSION)
    custom_every = lambda api: _custom(api).list_cluster_custom_object  # noqa: E731
    custom_one = lambda api: _custom(api).list_namespaced_custom_object  # noqa: E731
    return (
        Kind(CATALOGS, custom_every, custom_one, (*fovea, c.CATALOG_PLURAL)),
        Kind(SELECTIONS, custom_every, custom_one, (*fovea, c.SELECTION_PLURAL)),
        Kind(NODES, lambda api: _core(api).list_node, namespaces_too=False),
        Kind(
            PODS,
            lambda api: _core(api).list_pod_for_all_namespaces,
            lambda api: _core(api).list_namespaced_pod,
            selector=(("label_selector", MODEL_POD_SELECTOR),),
        ),
        Kind(  # without the right to list every pod, only the model pods are counted
            NODE_PODS,
            lambda api: _core(api).list_pod_for_all_namespaces,
            selector=(("field_selector", NODE_POD_SELECTOR),),
            optional=True,
            namespaces_too=False,
        ),
        Kind(NAMESPACES, lambda api: _core(api).list_namespace),  # per namespace: by name
        Kind(
            LEASES,
            lambda api: _coordination(api).list_lease_for_all_namespaces,
            lambda api: _coordination(api).list_namespaced_lease,
            selector=(("label_selector", leases.SELECTOR),),
            optional=True,
        ),
        Kind(
            SERVICES,
            lambda api: _core(api).list_service_for_all_namespaces,
            lambda api: _core(api).list_namespaced_service,
            selector=(("label_selector", ENDPOINT_SELECTOR),),
        ),
        Kind(
            DEVICE_CLASSES,
            custom_every,
            args=(*resource, DEVICE_CLASSES),
            optional=True,
            namespaces_too=False,
        ),
        Kind(SLICES, custom_every, args=(*resource, SLICES), optional=True, namespaces_too=False),
        Kind(
            CLAIMS,
            custom_every,
            custom_one,
            (*resource, CLAIMS),
            (("label_selector", dra.CLAIM_SELECTOR),),
            optional=True,
        ),
    )


def sources(namespaces: Iterable[str]) -> list[Source]:
    """One watch per kind, or per kind and namespace when the operator is confined to some."""
    names = sorted(set(namespaces))
    out = []
    for kind in kinds():
        if not names or not kind.namespaces_too:
            out.append(Source(kind.name, kind.every, kind.args, kind.selector, kind.optional))
            continue
        for ns in names:
            if kind.name == NAMESPACES:
                field = (("field_selector", f"metadata.name={ns}"),)
                out.append(Source(f"{kind.name}@{ns}", kind.every, (), field, kind.optional))
                continue
            one = kind.one or kind.every
            args = (*kind.args[:2], ns, *kind.args[2:]) if kind.args else (ns,)
            out.append(Source(f"{kind.name}@{ns}", one, args, kind.selector, kind.optional))
    return out


def _kind_of(source: str) -> str:
    return source.split("@", 1)[0]


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace') or ''}/{meta['name']}"


def _version(obj: Mapping[str, Any]) -> int | None:
    try:
        return int(obj["metadata"].get("resourceVersion") or "")
    except (TypeError, ValueError):
        return None


def _trim(obj: Raw) -> Raw:
    """What the planner never reads, dropped to keep the cache small (client-go's transform)."""
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def _node_view(node: Mapping[str, Any]) -> object:
    """What the plan reads of a Node: a kubelet's heartbeat alone does not wake the planner."""
    status = node.get("status") or {}
    conditions = [(x.get("type"), x.get("status")) for x in status.get("conditions") or []]
    meta = node["metadata"]
    return (
        meta.get("labels"),
        meta.get("annotations"),
        meta.get("deletionTimestamp"),
        node.get("spec"),
        status.get("capacity"),
        status.get("allocatable"),
        conditions,
    )


class WorldCache:
    """The raw objects of every kind the planner reads, kept by watches (the `Sink`)."""

    def __init__(
        self,
        clients: Clients,
        namespaces: Iterable[str] = (),
        resync_s: float = 300.0,
        watch_timeout_s: int = 300,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.clients = clients
        self.resync_s = resync_s
        self._sources = sources(namespaces)
        self._watch_timeout_s = watch_timeout_s
        self._max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._stores: dict[str, dict[str, Raw]] = {s.kind: {} for s in self._sources}
        self._unsynced: dict[str, str] = dict.fromkeys(self._stores, "not listed yet")
        self._synced = threading.Event()
        self._threads: list[Watcher] = []
        self.on_change: Callable[[], None] = lambda: None
        self.relists = 0  # lists after the first, for every kind (the resync's count)

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Start one watch per source (idempotent)."""
        if self._threads:
            return
        self._threads = [
            Watcher(
                source,
                self,
                self.clients,
                self._watch_timeout_s,
                self._max_backoff_s,
                resync_s=self.resync_s,
            )
            for source in self._sources
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        for thread in self._threads:
            thread.stop()
        for thread in self._threads:
            thread.join(timeout_s)

    def wait_synced(self, timeout_s: float) -> bool:
        """Block until every kind is listed and watched (startup and tests)."""
        return self._synced.wait(timeout_s)

    def unsynced(self) -> dict[str, str]:
        """Source -> why it is not synced (empty: the cache vouches for everything)."""
        with self._lock:
            return dict(self._unsynced)

    # --- reads ---------------------------------------------------------------

    def items(self, kind: str) -> list[Raw]:
        """Every stored object of `kind` (all its sources), in a stable order."""
        with self._lock:
            if self._unsynced:
                raise NotSynced(
                    "; ".join(f"{k}: {why}" for k, why in sorted(self._unsynced.items()))
                )
            found = [
                obj
                for source, store in self._stores.items()
                if _kind_of(source) == kind
                for obj in store.values()
            ]
        return sorted(found, key=_key)

    # --- the Sink (watcher threads) --------------------------------------------

    def reset(self, kind: str, items: list[dict[str, Any]]) -> None:
        fresh = {_key(o): _trim(o) for o in items}
        with self._lock:
            old = self._stores[kind]
            if kind not in self._unsynced:
                self.relists += 1
            changed = _views(kind, old) != _views(kind, fresh)
            self._stores[kind] = fresh
        if changed:
            self.on_change()

    def apply(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        with self._lock:
            store = self._stores[kind]
            before = store.get(key)
            if event_type == "DELETED":
                changed = store.pop(key, None) is not None
            else:
                store[key] = _trim(obj)
                changed = before is None or _view(kind, before) != _view(kind, obj)
        if changed:
            self.on_change()

    def connection(self, kind: str, synced: bool, why: str = "") -> None:
        with self._lock:
            if synced:
                self._unsynced.pop(kind, None)
            else:
                self._unsynced[kind] = why or "watch broken"
            now_synced = not self._unsynced
        if now_synced:
            self._synced.set()
        else:
            self._synced.clear()
        self.on_change()

    # --- write-through (the executor) ------------------------------------------

    def wrote(self, kind: str, obj: Mapping[str, Any]) -> None:
        """The object the API server returned for our write, unless a newer one is stored."""
        if not isinstance(obj, Mapping) or "metadata" not in obj:
            return
        meta = obj["metadata"]
        source = self._source_of(kind, str(meta.get("namespace") or ""))
        if source is None:
            return
        key = _key(obj)
        with self._lock:
            store = self._stores[source]
            before = store.get(key)
            old, new = (None if before is None else _version(before)), _version(obj)
            if before is not None and old is not None and new is not None and old >= new:
                return
            store[key] = _trim(dict(obj))

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        """The object is gone (the API server's answer to our delete)."""
        source = self._source_of(kind, namespace)
        if source is None:
            return
        with self._lock:
            self._stores[source].pop(f"{namespace}/{name}", None)

    def _source_of(self, kind: str, namespace: str) -> str | None:
        for name in (f"{kind}@{namespace}", kind):
            if name in self._stores:
                return name
        return None


def _view(kind: str, obj: Mapping[str, Any]) -> object:
    if _kind_of(kind) == NODES:
        return _node_view(obj)
    return (obj.get("metadata") or {}).get("resourceVersion")


def _views(kind: str, store: Mapping[str, Raw]) -> dict[str, object]:
    return {key: _view(kind, obj) for key, obj in store.items()}
