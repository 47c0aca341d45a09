"""The watch-fed cache: one watch per kind in, one immutable Snapshot out.

Watcher threads (`watch.py`) keep raw stores of the configured namespace's
ModelCatalogs, ModelSelections, model-server pods, the EndpointSlices of the
selections' Services (the inference route's view), session Leases and
Namespace object, of all Nodes, and (cluster-wide mode) of every namespace's
ModelSelections, ModelCatalogs, Namespaces, session Leases and pods bound to
nodes: what the operator plans with (`fovea.api.planning`), so /validate and
the what-if plan are built from the same input as the operator's decisions.
After any change a single rebuild thread (which coalesces bursts) builds a
new `Snapshot` with the response bytes of /config and /status precomputed,
swaps it in, and tells listeners. A request reads one attribute: O(1).

While any watch is broken, or while building a snapshot fails (retried with
backoff; the changes it could not publish are kept for the next one), the
snapshot says `synced=False` and since when (`stale_since`): reads keep
answering from the last synced view for a while, saying how stale it is
(`stale_reads.py`), since the model pods keep serving through a control-plane
outage; writes answer 503 at once, and a cache that never synced answers 503.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from fovea.api import responses
from fovea.api.clients import ClientSource
from fovea.api.state import (
    ClusterState,
    Selection,
    build_state,
    node_pod_view,
    node_view,
    parse_selection,
    pod_view,
)
from fovea.api.validation import validate_body
from fovea.domain import constants as c
from fovea.domain import leases
from fovea.domain.backoff import Backoff
from fovea.domain.endpoints import ENDPOINT_SELECTOR
from fovea.domain.quota import UNLIMITED, Quota
from fovea.watch import Source, Watcher

log = logging.getLogger(__name__)

CATALOGS = c.CATALOG_PLURAL
SELECTIONS = c.SELECTION_PLURAL
NODES = "nodes"
PODS = "pods"
PEERS = "peer-selections"  # every namespace's ModelSelections (cluster-wide mode)
NAMESPACE = "namespace"  # the API's own Namespace: its GPU-memory quota annotations
SLICES = "endpointslices"  # the selections' Services' endpoints (the inference route)
# What the operator plans with (fovea.api.planning): every namespace's ModelCatalogs and
# the pods bound to nodes (cluster-wide mode), and the session Leases.
PEER_CATALOGS = "peer-catalogs"
NODE_PODS = "node-pods"
LEASES = "session-leases"
KINDS = (
    CATALOGS,
    SELECTIONS,
    NODES,
    PODS,
    PEERS,
    NAMESPACE,
    SLICES,
    PEER_CATALOGS,
    NODE_PODS,
    LEASES,
)
CLUSTER_WIDE_KINDS = frozenset({PEERS, PEER_CATALOGS, NODE_PODS})
REBUILD = "rebuild"  # the key of `unsynced` while building a snapshot fails
FIRST_REBUILD_RETRY_S = 0.1
MODEL_POD_SELECTOR = f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}"
# What the responses read of a Node or a pod: an update that leaves it alone (a
# kubelet's heartbeat every few seconds, per node) rebuilds nothing.
RELEVANT: dict[str, Callable[[dict[str, Any]], object]] = {
    NODES: node_view,
    PODS: pod_view,
    NODE_PODS: node_pod_view,
}


@dataclass(frozen=True)
class Change:
    """One change of a selection, as the /events stream reports it."""

    event_type: str  # ADDED | MODIFIED | DELETED
    selection: Selection


class Snapshot:
    """An immutable view of the cluster with its response bodies, built once per change."""

    def __init__(
        self, version: int, state: ClusterState, unsynced: dict[str, str], changes: list[Change]
    ) -> None:
        self.version = version
        self.state = state
        self.unsynced = dict(unsynced)  # kind -> why it is not synced
        self.changes = changes  # what changed since the previous snapshot
        self.gpus = responses.gpu_view(state)
        self.loaded = responses.loaded_models(state)
        self.config_json = responses.to_json(responses.config_body(state, self.gpus))
        self.status_json = responses.to_json(responses.status_body(state, self.gpus))
        self._validate_cache: tuple[int, bytes] | None = None
        # When the view stopped being current after it had been (time.monotonic()); None
        # while synced, and before it ever was (set by the cache as it publishes).
        self.stale_since: float | None = None

    @property
    def synced(self) -> bool:
        return not self.unsynced

    def marked_stale(self, version: int, why: dict[str, str]) -> Snapshot:
        """This snapshot's state and bodies under a new version, not synced for `why`."""
        stale = copy.copy(self)
        stale.version = version
        stale.unsynced = {**self.unsynced, **why}
        stale.changes = []
        return stale

    def validate_json(self, now: float) -> bytes:
        """POST /validate's body at `now`; computed once per snapshot and second (it runs the
        placement plan, and time alone ends session leases and keepAlive)."""
        second = int(now)
        cached = self._validate_cache
        if cached is not None and cached[0] == second:
            return cached[1]
        body = responses.to_json(validate_body(self.state, now))
        self._validate_cache = (second, body)
        return body


Listener = Callable[[Snapshot], None]


@dataclass
class _Stores:
    kinds: tuple[str, ...]
    raw: dict[str, dict[str, dict[str, Any]]] = field(init=False)
    selections: dict[str, Selection] = field(default_factory=dict)
    unsynced: dict[str, str] = field(init=False)
    changes: list[Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.raw = {kind: {} for kind in KINDS}
        self.unsynced = dict.fromkeys(self.kinds, "not listed yet")


class ClusterCache:
    """Watches one namespace (and the Nodes) and serves Snapshots of it.

    With `cluster_wide`, it also watches the ModelSelections of every
    namespace: their statuses say which GPUs other namespaces hold, so
    /validate and /status can tell what the operator really does here.
    """

    def __init__(
        self,
        clients: ClientSource,
        namespace: str,
        catalog_name: str = c.DEFAULT_CATALOG_NAME,
        watch_timeout_s: int = 60,
        max_backoff_s: float = 5.0,
        cluster_wide: bool = True,
        default_quota: Quota = UNLIMITED,
        warm_switches: bool = False,
    ) -> None:
        self.clients = clients
        self.namespace = namespace
        self.catalog_name = catalog_name
        self.cluster_wide = cluster_wide
        self.default_quota = default_quota  # the operator's cluster default (a shared setting)
        self.warm_switches = warm_switches  # the operator's, too (the plan's warm pods)
        self._watch_timeout_s = watch_timeout_s
        self._max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        self._stores = _Stores(
            KINDS if cluster_wide else tuple(k for k in KINDS if k not in CLUSTER_WIDE_KINDS)
        )
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._synced_event = threading.Event()
        self._listeners: list[Listener] = []
        self._version = 0
        self._snapshot = self._build(dict(self._stores.unsynced), [])
        self._threads: list[threading.Thread] = []
        self._ever_synced = False
        self._stale_since: float | None = None

    # --- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Start the watches and the rebuild thread (idempotent)."""
        if self._threads:
            return
        rebuild = threading.Thread(target=self._rebuild_loop, name="cache-rebuild", daemon=True)
        watchers = [
            Watcher(source, self, self.clients, self._watch_timeout_s, self._max_backoff_s)
            for source in self._sources()
        ]
        self._threads = [rebuild, *watchers]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every thread; the cache cannot be restarted afterwards."""
        self._stopping.set()
        self._dirty.set()
        for thread in self._threads:
            if isinstance(thread, Watcher):
                thread.stop()
        for thread in self._threads:
            thread.join(timeout_s)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(snapshot)` from the rebuild thread after every new snapshot."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling `listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def snapshot(self) -> Snapshot:
        """The latest snapshot (one attribute read: safe from any thread)."""
        return self._snapshot

    def wait_synced(self, timeout_s: float) -> bool:
        """Block until a synced snapshot is published (for startup and tests)."""
        return self._synced_event.wait(timeout_s)

    # --- watch sink (called from watcher threads) ---------------------------

    def reset(self, kind: str, items: list[dict[str, Any]]) -> None:
        """A fresh list of `kind` replaces what was stored."""
        by_name = {_key(kind, o): o for o in items}
        parsed = _parse_all(by_name) if kind == SELECTIONS else {}
        with self._lock:
            if kind == SELECTIONS:
                old = self._stores.selections
                for name, sel in parsed.items():
                    prev = old.get(name)
                    if prev is None or prev.resource_version != sel.resource_version:
                        kind_of = "ADDED" if prev is None else "MODIFIED"
                        self._stores.changes.append(Change(kind_of, sel))
                for name in old.keys() - parsed.keys():
                    self._stores.changes.append(Change("DELETED", old[name]))
                self._stores.selections = parsed
            self._stores.raw[kind] = by_name
        self._dirty.set()

    def apply(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        """One watch event of `kind`."""
        name = _key(kind, obj)
        sel = parse_selection(obj) if kind == SELECTIONS else None
        view = RELEVANT.get(kind)
        changed = True
        with self._lock:
            store = self._stores.raw[kind]
            if event_type == "DELETED":
                store.pop(name, None)
                if kind == SELECTIONS:
                    gone = self._stores.selections.pop(name, None)
                    if gone is not None:
                        self._stores.changes.append(Change("DELETED", gone))
            else:
                before = store.get(name)
                store[name] = obj
                if sel is not None:
                    self._stores.selections[name] = sel
                    self._stores.changes.append(Change(event_type, sel))
                elif kind == SELECTIONS:
                    self._stores.selections.pop(name, None)  # no longer parses: not served
                if view is not None and before is not None:
                    changed = view(before) != view(obj)
        if changed:
            self._dirty.set()

    def connection(self, kind: str, synced: bool, why: str = "") -> None:
        """A watch has (re)gained or lost its connection."""
        with self._lock:
            was = dict(self._stores.unsynced)
            if synced:
                self._stores.unsynced.pop(kind, None)
            else:
                self._stores.unsynced[kind] = why or "watch broken"
            changed = was != self._stores.unsynced
        if changed:
            self._dirty.set()

    # --- rebuild ------------------------------------------------------------

    def _rebuild_loop(self) -> None:
        backoff = Backoff(FIRST_REBUILD_RETRY_S, self._max_backoff_s)
        while True:
            self._dirty.wait()
            if self._stopping.is_set():
                return
            self._dirty.clear()
            with self._lock:
                raw = {kind: dict(store) for kind, store in self._stores.raw.items()}
                selections = dict(self._stores.selections)
                unsynced = dict(self._stores.unsynced)
                changes, self._stores.changes = self._stores.changes, []
            try:
                snapshot = self._build(unsynced, changes, raw, selections)
            except Exception as exc:  # a bug here must not kill the cache, nor pass for current
                delay = backoff.next()
                log.exception("rebuilding the API cache failed; retrying in %.1fs", delay)
                with self._lock:  # keep the changes for the /events of the next snapshot
                    self._stores.changes = changes + self._stores.changes
                self._publish(self._stale(f"rebuild failed: {_why(exc)}"))
                self._stopping.wait(delay)
                self._dirty.set()
                continue
            backoff.reset()
            self._publish(snapshot)

    def _stale(self, why: str) -> Snapshot:
        """The last snapshot's state, marked not current (reads answer 503, /readyz says why)."""
        last = self._snapshot
        if last.unsynced.get(REBUILD) == why:
            return last  # already published as stale for this reason
        self._version += 1
        return last.marked_stale(self._version, {REBUILD: why})

    def _publish(self, snapshot: Snapshot) -> None:
        if snapshot is self._snapshot:
            return
        if snapshot.synced:
            self._ever_synced, self._stale_since = True, None
        elif self._ever_synced and self._stale_since is None:
            self._stale_since = time.monotonic()
        snapshot.stale_since = self._stale_since
        self._snapshot = snapshot
        if snapshot.synced:
            self._synced_event.set()
        else:
            self._synced_event.clear()
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                log.exception("cache listener failed")

    def _build(
        self,
        unsynced: dict[str, str],
        changes: list[Change],
        raw: dict[str, dict[str, dict[str, Any]]] | None = None,
        selections: dict[str, Selection] | None = None,
    ) -> Snapshot:
        raw = raw or {kind: {} for kind in KINDS}
        state = build_state(
            self.namespace,
            self.catalog_name,
            raw[CATALOGS],
            selections or {},
            raw[NODES],
            raw[PODS],
            raw[PEERS] if self.cluster_wide else None,
            raw[NAMESPACE].get(self.namespace),
            raw[SLICES],
            peer_catalogs=raw[PEER_CATALOGS] if self.cluster_wide else None,
            node_pods=raw[NODE_PODS] if self.cluster_wide else None,
            namespaces=raw[NAMESPACE],
            session_leases=raw[LEASES],
            default_quota=self.default_quota,
            warm_switches=self.warm_switches,
        )
        self._version += 1
        return Snapshot(self._version, state, unsynced, changes)

    def _sources(self) -> list[Source]:
        ns = self.namespace

        def custom(api: client.ApiClient) -> Any:
            return client.CustomObjectsApi(api).list_namespaced_custom_object

        sources = [
            Source(CATALOGS, custom, (c.GROUP, c.VERSION, ns, c.CATALOG_PLURAL)),
            Source(SELECTIONS, custom, (c.GROUP, c.VERSION, ns, c.SELECTION_PLURAL)),
            Source(NODES, lambda api: client.CoreV1Api(api).list_node),
            Source(  # cluster-wide: every Namespace's quota (the operator admits all)
                NAMESPACE,
                lambda api: client.CoreV1Api(api).list_namespace,
                (),
                () if self.cluster_wide else (("field_selector", f"metadata.name={ns}"),),
            ),
            Source(
                PODS,
                lambda api: client.CoreV1Api(api).list_namespaced_pod,
                (ns,),
                (("label_selector", MODEL_POD_SELECTOR),),
            ),
            Source(
                SLICES,
                lambda api: client.DiscoveryV1Api(api).list_namespaced_endpoint_slice,
                (ns,),
                (("label_selector", ENDPOINT_SELECTOR),),
            ),
        ]
        if self.cluster_wide:

            def every_namespace(api: client.ApiClient) -> Any:
                return client.CustomObjectsApi(api).list_cluster_custom_object

            sources.append(Source(PEERS, every_namespace, (c.GROUP, c.VERSION, c.SELECTION_PLURAL)))
            sources.append(
                Source(PEER_CATALOGS, every_namespace, (c.GROUP, c.VERSION, c.CATALOG_PLURAL))
            )
            sources.append(  # all: a model pod not bound yet still says where it is planned
                Source(NODE_PODS, lambda api: client.CoreV1Api(api).list_pod_for_all_namespaces)
            )
            sources.append(
                Source(
                    LEASES,
                    lambda api: client.CoordinationV1Api(api).list_lease_for_all_namespaces,
                    (),
                    (("label_selector", leases.SELECTOR),),
                )
            )
        else:
            sources.append(
                Source(
                    LEASES,
                    lambda api: client.CoordinationV1Api(api).list_namespaced_lease,
                    (ns,),
                    (("label_selector", leases.SELECTOR),),
                )
            )
        return sources


def _key(kind: str, obj: dict[str, Any]) -> str:
    """How a store keys an object: its name; "namespace/name" for the cluster-wide kind."""
    meta = obj["metadata"]
    cluster_wide = kind in CLUSTER_WIDE_KINDS or kind == LEASES
    return f"{meta.get('namespace')}/{meta['name']}" if cluster_wide else str(meta["name"])


def _why(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 200 else text[:200] + "..."


def _parse_all(by_name: dict[str, dict[str, Any]]) -> dict[str, Selection]:
    out = {}
    for name, obj in by_name.items():
        sel = parse_selection(obj)
        if sel is not None:
            out[name] = sel
    return out
