"""The cluster as the API sees it: parsed resources, plain data, no I/O.

The watch cache (`cache.py`) keeps raw objects per kind and turns them into
a `ClusterState` after every change; response builders read only this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from fovea.api.parsing import parse_lenient
from fovea.domain import constants as c
from fovea.domain.conditions import ConditionType, Reason
from fovea.domain.endpoints import Endpoint, endpoints_by_service
from fovea.domain.messages import say
from fovea.domain.quota import UNLIMITED, Quota, quota_from_annotations
from fovea.domain.resources import CatalogSpec, SelectionSpec, SelectionStatus, selection_name
from fovea.domain.warm import ANNOTATION_WARM_OPTIONS

log = logging.getLogger(__name__)

Raw = Mapping[str, Any]


@dataclass(frozen=True)
class Selection:
    """One ModelSelection, parsed once per resourceVersion."""

    name: str
    resource_version: str
    generation: int
    spec: SelectionSpec
    status: SelectionStatus
    namespace: str = ""
    uid: str = ""  # its model pods' controller owner reference


@dataclass(frozen=True)
class ClusterState:
    """Everything the responses are built from."""

    namespace: str
    catalog_name: str
    catalog: CatalogSpec | None
    selections: Mapping[str, Selection]  # by name
    nodes: tuple[Raw, ...]
    live_pods: frozenset[str]  # model-server pods that exist and are not terminating
    by_task: Mapping[str, Selection] = field(default_factory=dict)
    # Why the catalog cannot be served: missing or does not parse (None: it parsed).
    catalog_error: str | None = None
    # Selections of the other namespaces, by "namespace/name"; empty in namespaced mode.
    peers: Mapping[str, Selection] = field(default_factory=dict)
    cluster_wide: bool = False  # whether `peers` is watched (else other namespaces are unseen)
    quota: Quota = UNLIMITED  # this namespace's GPU-memory quota (its annotations)
    # The inference route's view (fovea.api.routing): every Service's endpoints, from its
    # EndpointSlices, and the model each model-server pod runs (by pod name).
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    pod_models: Mapping[str, str] = field(default_factory=dict)
    # What the operator plans with, as far as this API can see (`fovea.api.planning`):
    # every visible catalog that parses, by (namespace, name); the managed model pods and
    # the other pods bound to nodes (cluster-wide mode); each visible namespace's quota
    # (the cluster default applied); the session Leases (live or not: time decides).
    catalogs: Mapping[tuple[str, str], CatalogSpec] = field(default_factory=dict)
    model_pods: tuple[Raw, ...] = ()
    node_pods: tuple[Raw, ...] = ()
    quotas: Mapping[str, Quota] = field(default_factory=dict)
    session_leases: tuple[Raw, ...] = ()
    warm_switches: bool = False  # the operator's setting (shared): its warm pods' memory

    def selection_for(self, task: str) -> Selection | None:
        """The task's selection: the one named `selection_name(task)`, else any for the task."""
        return self.by_task.get(task)


def build_state(
    namespace: str,
    catalog_name: str,
    catalogs: Mapping[str, Raw],
    selections: Mapping[str, Selection],
    nodes: Mapping[str, Raw],
    pods: Mapping[str, Raw],
    peers: Mapping[str, Raw] | None = None,
    namespace_object: Raw | None = None,
    slices: Mapping[str, Raw] | None = None,
    *,
    peer_catalogs: Mapping[str, Raw] | None = None,
    node_pods: Mapping[str, Raw] | None = None,
    namespaces: Mapping[str, Raw] | None = None,
    session_leases: Mapping[str, Raw] | None = None,
    default_quota: Quota = UNLIMITED,
    warm_switches: bool = False,
) -> ClusterState:
    """Assemble a ClusterState from the cache's stores (all keyed by name).

    `peers` are the raw selections of every namespace (keyed "namespace/name")
    when the API reads them cluster-wide, None in namespaced mode. `slices` are
    the EndpointSlices of the selections' Services. Cluster-wide, `peer_catalogs`
    are every namespace's ModelCatalogs and `node_pods` every pod ("namespace/name");
    `namespaces` the Namespaces seen (their quota annotations, else `default_quota`,
    the operator's cluster default); `session_leases` the session Leases.
    """
    raw_catalog = catalogs.get(catalog_name)
    catalog: CatalogSpec | None = None
    catalog_error: str | None = say(
        Reason.CATALOG_NOT_FOUND, catalog=catalog_name, namespace=namespace
    )
    if raw_catalog is not None:
        catalog, catalog_error = parse_catalog(raw_catalog)
    seen_namespaces = {**(namespaces or {})}
    if namespace_object is not None:
        seen_namespaces[namespace] = namespace_object
    quotas = {
        name: quota_from_annotations((ns.get("metadata") or {}).get("annotations"), default_quota)
        for name, ns in seen_namespaces.items()
    }
    every_pod = node_pods if node_pods is not None else {}
    return ClusterState(
        namespace=namespace,
        catalog_name=catalog_name,
        catalog=catalog,
        selections=dict(selections),
        nodes=tuple(nodes[name] for name in sorted(nodes)),
        live_pods=frozenset(
            name for name, pod in pods.items() if not pod["metadata"].get("deletionTimestamp")
        ),
        by_task=index_by_task(selections.values()),
        catalog_error=catalog_error,
        peers=_peers(namespace, peers or {}),
        cluster_wide=peers is not None,
        quota=quota_from_annotations(
            (namespace_object or {}).get("metadata", {}).get("annotations"), default_quota
        ),
        endpoints=endpoints_by_service((slices or {}).values()),
        pod_models=pod_models(pods, selections.values()),
        catalogs=_catalogs(namespace, catalogs, peer_catalogs or {}),
        model_pods=tuple(
            pod
            for _, pod in sorted(every_pod.items() if node_pods is not None else pods.items())
            if _managed_model_pod(pod)
        ),
        node_pods=tuple(pod for _, pod in sorted(every_pod.items())),
        quotas=quotas,
        session_leases=tuple(lease for _, lease in sorted((session_leases or {}).items())),
        warm_switches=warm_switches,
    )


def with_fresh(
    state: ClusterState,
    catalog: CatalogSpec | None,
    catalog_error: str | None,
    task: str,
    selection: Selection | None,
) -> ClusterState:
    """`state` with the catalog and the task's selection as read from the API server
    (`fovea.api.confirm`); a selection not read (None) leaves the cache's in place."""
    by_task = dict(state.by_task)
    if selection is not None:
        by_task[task] = selection
    return replace(state, catalog=catalog, catalog_error=catalog_error, by_task=by_task)


def _managed_model_pod(pod: Raw) -> bool:
    """A model pod the operator manages (the operator's own selector of its pods)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return bool(
        labels.get(c.LABEL_COMPONENT) == c.COMPONENT_MODEL_POD
        and labels.get(c.LABEL_MANAGED_BY) == c.MANAGED_BY
    )


def _catalogs(
    namespace: str, own: Mapping[str, Raw], others: Mapping[str, Raw]
) -> dict[tuple[str, str], CatalogSpec]:
    """Every visible catalog that parses, by (namespace, name) (one that does not is skipped,
    as the operator plans no selection of it)."""
    raw = {(namespace, name): obj for name, obj in own.items()}
    for peer_key, obj in others.items():
        ns, _, name = peer_key.partition("/")
        raw.setdefault((ns, name), obj)
    out: dict[tuple[str, str], CatalogSpec] = {}
    for key, obj in sorted(raw.items()):
        try:
            out[key] = CatalogSpec.model_validate(obj.get("spec") or {})
        except ValidationError:
            continue
    return out


def pod_models(pods: Mapping[str, Raw], selections: Any = ()) -> dict[str, str]:
    """The model (option name) each model-server pod runs, by pod name: its FOVEA_MODEL, or
    for a warm pod, which switches in place, the model its report says it serves now.

    A warm pod whose report is not in a selection's status (a selection's earlier pod,
    or one adopted by another) is left out: its FOVEA_MODEL names its first model only,
    and a request sent to it could be answered by whichever it switched to since.
    """
    out = {}
    selections = list(selections)
    reported = {
        sel.status.runtime.pod
        for sel in selections
        if sel.status.runtime is not None and sel.status.runtime.serving_model
    }
    for name, pod in pods.items():
        warm = ANNOTATION_WARM_OPTIONS in ((pod.get("metadata") or {}).get("annotations") or {})
        if warm and name not in reported:
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            for var in container.get("env") or []:
                if var.get("name") == c.ENV_MODEL and var.get("value"):
                    out[name] = str(var["value"])
    for sel in selections:
        runtime = sel.status.runtime
        if runtime is not None and runtime.pod in out and runtime.serving_model:
            out[runtime.pod] = runtime.serving_model
    return out


def _peers(namespace: str, raw: Mapping[str, Raw]) -> dict[str, Selection]:
    out = {}
    for key in sorted(raw):
        if key.split("/", 1)[0] == namespace:
            continue  # this namespace's own: already in `selections`
        sel = parse_selection(raw[key])
        if sel is not None:
            out[key] = sel
    return out


def index_by_task(selections: Any) -> dict[str, Selection]:
    """Map each task to its selection, preferring the canonically named one."""
    out: dict[str, Selection] = {}
    for sel in sorted(selections, key=lambda s: s.name):
        task = sel.spec.task
        if task not in out or sel.name == selection_name(task):
            out[task] = sel
    return out


def parse_catalog(raw: Raw) -> tuple[CatalogSpec | None, str | None]:
    """The spec of a ModelCatalog object, or None and why (logged) when it does not parse."""
    try:
        return CatalogSpec.model_validate(raw.get("spec") or {}), None
    except ValidationError as exc:
        log.warning("ModelCatalog %s does not parse: %s", _name(raw), exc)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        return None, f"ModelCatalog '{_name(raw)}' does not parse: {problems}"


def parse_selection(raw: Raw) -> Selection | None:
    """A ModelSelection object parsed; None (logged) when its spec does not parse.

    The status is read leniently: a field this version does not know is
    dropped rather than hiding the selection.
    """
    meta = raw.get("metadata") or {}
    try:
        spec = SelectionSpec.model_validate(raw.get("spec") or {})
    except ValidationError as exc:
        log.warning("ModelSelection %s does not parse: %s", _name(raw), exc)
        return None
    try:
        status = parse_lenient(SelectionStatus, dict(raw.get("status") or {}))
    except ValidationError as exc:
        log.warning("status of ModelSelection %s does not parse: %s", _name(raw), exc)
        status = SelectionStatus()
    return Selection(
        name=str(meta.get("name", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        generation=int(meta.get("generation") or 0),
        spec=spec,
        status=status,
        namespace=str(meta.get("namespace") or ""),
        uid=str(meta.get("uid") or ""),
    )


def node_view(node: Raw) -> object:
    """The parts of a Node the responses depend on (GPU labels, capacity, readiness)."""
    meta, spec, status = (node.get(k) or {} for k in ("metadata", "spec", "status"))
    conditions = status.get("conditions") or []
    ready = [x.get("status") for x in conditions if x.get("type") == ConditionType.READY]
    return (
        meta.get("labels"),
        spec.get("unschedulable"),
        spec.get("taints"),
        status.get("allocatable"),
        status.get("capacity"),
        ready,
    )


def node_pod_view(pod: Raw) -> object:
    """The parts of a pod bound to a node the plan depends on (not its status's heartbeats)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    return (
        meta.get("labels"),
        meta.get("annotations"),
        meta.get("ownerReferences"),
        meta.get("deletionTimestamp"),
        spec.get("nodeName"),
        spec.get("containers"),
        spec.get("initContainers"),
        (pod.get("status") or {}).get("phase"),
        (pod.get("status") or {}).get("conditions"),
    )


def pod_view(pod: Raw) -> object:
    """The parts of a model-server pod the responses depend on: whether it is going away."""
    return (pod.get("metadata") or {}).get("deletionTimestamp")


def _name(raw: Raw) -> str:
    return str((raw.get("metadata") or {}).get("name", "?"))
