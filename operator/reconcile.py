"""The operator's decision: a snapshot of the cluster in, the actions to take out.

Pure and level-based: it looks at every catalog, selection, node and model pod
at once, plans placement for all selections together (`fovea.domain.placement`),
and says which pods to create or delete, which statuses to patch and which
Events to post. The time is an input, so tests and retries are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from fovea.domain import constants as c
from fovea.domain import placement
from fovea.domain.budget import memory_limit_refusal
from fovea.domain.gpus import cpu_nodes, gpus_from_nodes
from fovea.domain.placement import Outcome
from fovea.domain.resources import (
    CatalogSpec,
    DevicePolicy,
    LoadPolicy,
    ModelOption,
    Phase,
    SelectionSpec,
)
from fovea.operator.podspec import PodSettings, SelectionRef, Target, build_pod

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Selection:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: SelectionSpec | None  # None: the stored object does not parse
    status: Mapping[str, Any]
    spec_error: str | None = None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class World:
    """Everything the operator reads, as plain data."""

    catalogs: Mapping[Key, Mapping[str, Any]]  # raw catalog specs
    selections: Sequence[Selection]
    nodes: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]  # model-server pods managed by fovea-models
    secrets: frozenset[Key]  # API-key Secrets that exist (only those referenced)
    now: datetime = field(default_factory=lambda: datetime.fromtimestamp(0, UTC))


@dataclass(frozen=True)
class Event:
    namespace: str
    name: str
    uid: str
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Actions:
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[Key] = field(default_factory=list)
    status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)  # where model pods need their identity


@dataclass(frozen=True)
class Resolved:
    sel: Selection
    option: ModelOption | None
    catalog: CatalogSpec | None
    problem: tuple[Phase, str, str] | None  # phase, reason, message when not plannable


def reconcile(world: World, settings: PodSettings) -> Actions:
    """Compute every action that brings the cluster to the planned state."""
    catalogs, catalog_errors = _parse_catalogs(world.catalogs)
    resolved = [_resolve(sel, catalogs, catalog_errors, world.secrets) for sel in world.selections]
    pods_by_owner = _pods_by_owner(world.pods)
    demands = [_demand(r, pods_by_owner.get(r.sel.uid, [])) for r in resolved if _needs_compute(r)]
    thresholds = [r.catalog.inference.offload_threshold for r in resolved if r.catalog]
    threshold = min(thresholds, default=0.8)
    overrides = [o for cat in catalogs.values() for o in cat.gpu_overrides]
    result = placement.plan(
        gpus_from_nodes(list(world.nodes), overrides),
        demands,
        threshold=threshold,
        sharing=settings.sharing_mode,
    )

    cpu_node = _cpu_node(world.nodes)
    actions = Actions()
    keep: set[Key] = set()
    for r in resolved:
        own_pods = pods_by_owner.get(r.sel.uid, [])
        place = result.placements.get(_key_str(r.sel))
        spare = result.spare_gib(place.node, place.gpu_index) if place and place.node else 0.0
        status = _status_for(r, place, spare, cpu_node, own_pods, settings, actions)
        desired = status.pop("_desired_pod", None)
        if desired is not None:
            keep.add((r.sel.namespace, desired))
        keep.update(status.pop("_keep", []))
        _record_status(r.sel, status, world.now, actions)

    # Everything managed and not kept goes: old models, orphans, evictions.
    for pod in world.pods:
        key = _pod_key(pod)
        if key not in keep and not pod["metadata"].get("deletionTimestamp"):
            actions.delete.append(key)
    actions.delete.sort()
    return actions


# --- resolution -------------------------------------------------------------


def _parse_catalogs(
    raw: Mapping[Key, Mapping[str, Any]],
) -> tuple[dict[Key, CatalogSpec], dict[Key, str]]:
    parsed: dict[Key, CatalogSpec] = {}
    errors: dict[Key, str] = {}
    for key, spec in raw.items():
        try:
            parsed[key] = CatalogSpec.model_validate(spec)
        except ValidationError as exc:
            errors[key] = _first_error(exc)
    return parsed, errors


def _resolve(
    sel: Selection,
    catalogs: Mapping[Key, CatalogSpec],
    catalog_errors: Mapping[Key, str],
    secrets: frozenset[Key],
) -> Resolved:
    if sel.spec is None:
        return Resolved(sel, None, None, (Phase.FAILED, "InvalidSpec", sel.spec_error or "invalid"))
    spec = sel.spec
    ckey = (sel.namespace, spec.catalog)
    catalog = catalogs.get(ckey)
    if catalog is None:
        why = catalog_errors.get(ckey)
        msg = (
            f"ModelCatalog '{spec.catalog}' is invalid: {why}"
            if why
            else f"ModelCatalog '{spec.catalog}' not found in namespace '{sel.namespace}'"
        )
        return Resolved(sel, None, None, (Phase.PENDING, "CatalogNotFound", msg))
    if spec.task not in catalog.tasks:
        msg = f"Task '{spec.task}' is not in ModelCatalog '{spec.catalog}'"
        return Resolved(sel, None, catalog, (Phase.FAILED, "UnknownTask", msg))
    if not spec.model:
        return Resolved(
            sel, None, catalog, (Phase.UNSELECTED, "NoModelSelected", "No model selected")
        )
    option = catalog.option(spec.task, spec.model)
    if option is None:
        msg = f"Model '{spec.model}' not found for task '{spec.task}'"
        return Resolved(sel, None, catalog, (Phase.FAILED, "ModelNotFound", msg))
    if option.is_external:
        secret = option.api_key_secret
        if secret and (sel.namespace, secret) not in secrets:
            msg = f"External API key Secret '{secret}' (key 'api-key') not found"
            return Resolved(sel, option, catalog, (Phase.PENDING, "APIKeyMissing", msg))
        msg = f"External API model '{option.model_id}' needs no pod"
        return Resolved(sel, option, catalog, (Phase.READY, "ExternalAPI", msg))
    refusal = memory_limit_refusal(spec.model, option, catalog.inference)
    if refusal is not None:
        return Resolved(sel, option, catalog, (Phase.FAILED, "ExceedsMaxMemoryPerModel", refusal))
    policy = spec.effective_load_policy(catalog.inference)
    if policy == LoadPolicy.ON_DEMAND and not spec.wanted:
        why = " (the catalog's warmupOnStartup is false)" if spec.load_policy is None else ""
        msg = f"Load policy onDemand{why}: waits for /load or first use"
        return Resolved(sel, option, catalog, (Phase.PENDING, "WaitingForDemand", msg))
    return Resolved(sel, option, catalog, None)


def _needs_compute(r: Resolved) -> bool:
    return r.problem is None and r.option is not None


def _key_str(sel: Selection) -> str:
    return f"{sel.namespace}/{sel.name}"


def _demand(r: Resolved, own_pods: list[Mapping[str, Any]]) -> placement.Demand:
    assert r.option is not None and r.sel.spec is not None
    current = None
    for pod in own_pods:
        ann = pod["metadata"].get("annotations", {})
        if pod["metadata"].get("labels", {}).get(c.LABEL_MODEL) == _label(r.sel.spec.model):
            gpu = ann.get(c.ANNOTATION_PLANNED_GPU, "")
            current = placement.Slot(
                ann.get(c.ANNOTATION_PLANNED_NODE, ""), int(gpu) if gpu else None
            )
            break
    return placement.Demand(
        key=_key_str(r.sel),
        task=r.sel.spec.task,
        model=r.sel.spec.model or "",
        vram_gib=r.option.vram_gib,
        priority=r.sel.spec.priority,
        last_used=max(
            _epoch(r.sel.status.get("lastUsed")),
            _epoch((r.sel.status.get("runtime") or {}).get("lastUsed")),
        ),
        device_policy=DevicePolicy(r.sel.spec.device_policy),
        cpu_memory_gib=r.option.cpu_memory_gb,
        current=current,
        was_evicted=r.sel.status.get("phase") == Phase.EVICTED.value,
    )


# --- status -----------------------------------------------------------------


def _status_for(
    r: Resolved,
    place: placement.Placement | None,
    spare_gib: float,
    cpu_node: str | None,
    own_pods: list[Mapping[str, Any]],
    settings: PodSettings,
    actions: Actions,
) -> dict[str, Any]:
    sel, spec, option, catalog = r.sel, r.sel.spec, r.option, r.catalog
    status: dict[str, Any] = {
        "model": spec.model if spec else None,
        "modelId": option.model_id if option else None,
        "declaredMemoryGb": round(option.vram_gib, 3) if option else None,
        "node": None,
        "gpuIndex": None,
        "pod": None,
        "device": None,
    }
    if r.problem is not None:
        phase, reason, message = r.problem
        status.update(phase=phase.value, message=message)
        status["_conditions"] = [("Scheduled", phase == Phase.READY, reason, message)]
        if phase == Phase.READY:  # external API
            status["device"] = "external"
        return status
    assert place is not None and option is not None and spec is not None and catalog is not None
    if place.outcome in (Outcome.EVICTED, Outcome.UNSCHEDULABLE):
        phase = Phase.EVICTED if place.outcome == Outcome.EVICTED else Phase.UNSCHEDULABLE
        status.update(phase=phase.value, message=place.reason)
        status["_conditions"] = [("Scheduled", False, phase.value, place.reason)]
        if sel.status.get("phase") != phase.value:
            actions.events.append(
                Event(sel.namespace, sel.name, sel.uid, "Warning", phase.value, place.reason)
            )
        return status

    on_gpu = place.outcome == Outcome.GPU
    target = Target(place.node, place.gpu_index) if on_gpu else Target(cpu_node, None)
    pod = build_pod(
        SelectionRef(sel.namespace, sel.name, sel.uid, spec.task, spec.model or ""),
        option,
        target,
        settings,
        batch_size=catalog.inference.default_batch_size,
    )
    name = pod["metadata"]["name"]
    status["_desired_pod"] = name
    actions.namespaces.add(sel.namespace)
    existing = next((p for p in own_pods if p["metadata"]["name"] == name), None)
    create, keep = _handover(pod, existing, own_pods, spare_gib)
    if create:
        actions.create.append(pod)
    status["_keep"] = keep
    fallback = place.outcome == Outcome.CPU and spec.device_policy != DevicePolicy.CPU
    status.update(node=target.node, gpuIndex=target.gpu_index, pod=name)
    status["device"] = "cuda:0" if on_gpu else "cpu"
    runtime = sel.status.get("runtime") or {}
    runtime_current = runtime.get("pod") == name
    conditions = [("Scheduled", True, "CPUFallback" if fallback else "Placed", place.reason)]
    if fallback and sel.status.get("phase") != Phase.CPU_FALLBACK.value:
        actions.events.append(
            Event(sel.namespace, sel.name, sel.uid, "Warning", "CPUFallback", place.reason)
        )
    if runtime_current:
        status["measuredMemoryGb"] = runtime.get("measuredMemoryGb")
        status["loadTimeSeconds"] = runtime.get("loadTimeSeconds")
        if runtime.get("lastUsed"):
            status["lastUsed"] = runtime["lastUsed"]
        if runtime.get("device"):
            status["device"] = runtime["device"]
    state = runtime.get("state") if runtime_current else None
    pod_ready = existing is not None and _pod_ready(existing)
    if state == "Failed":
        phase, message = Phase.FAILED, f"Failed to load model: {runtime.get('reason') or 'unknown'}"
        conditions.append(("Ready", False, "LoadFailed", message))
    elif state == "Ready" and pod_ready:
        phase = Phase.CPU_FALLBACK if fallback else Phase.READY
        message = place.reason if fallback else f"{spec.model} ready on {status['device']}"
        if runtime.get("simulatedGpu"):
            message += f" (node {target.node} has a simulated GPU: the model runs on the CPU)"
        conditions.append(("Ready", True, "Loaded", message))
    elif existing is not None and existing.get("spec", {}).get("nodeName"):
        phase, message = Phase.LOADING, f"Pod {name} is loading {option.model_id}"
        conditions.append(("Ready", False, "Loading", message))
    else:
        phase, message = Phase.SCHEDULING, f"Pod {name} is waiting to be scheduled"
        conditions.append(("Ready", False, "Scheduling", message))
    status.update(phase=phase.value, message=message)
    status["_conditions"] = conditions
    return status


def _handover(
    pod: dict[str, Any],
    existing: Mapping[str, Any] | None,
    own_pods: list[Mapping[str, Any]],
    spare_gib: float,
) -> tuple[bool, list[Key]]:
    """Make-before-break when both fit, break-before-make when they don't.

    Returns whether to create the new pod now, and which old pods of the same
    selection to keep for the moment. An old pod is kept while its successor
    loads if the successor's GPU still has room for it; otherwise the old pod
    goes first and the new one is created once the old one is gone.
    """
    name = pod["metadata"]["name"]
    old = [p for p in own_pods if p["metadata"]["name"] != name]
    if existing is not None:
        if _pod_ready(existing):
            return False, []
        return False, [_pod_key(p) for p in old if not p["metadata"].get("deletionTimestamp")]
    gpu_old = [p for p in old if _holds_gpu(p)]
    if any(p["metadata"].get("deletionTimestamp") for p in gpu_old):
        return False, []  # wait until the GPU memory is really released
    room = spare_gib
    for p in gpu_old:
        room -= float(_ann(p, c.ANNOTATION_VRAM_GIB) or 0)
    if room < 0:
        return False, []  # break-before-make: old pods are deleted, create next pass
    return True, [_pod_key(p) for p in old]


def _pod_key(pod: Mapping[str, Any]) -> Key:
    return (pod["metadata"]["namespace"], pod["metadata"]["name"])


def _holds_gpu(pod: Mapping[str, Any]) -> bool:
    return bool(_ann(pod, c.ANNOTATION_PLANNED_GPU))


def _record_status(sel: Selection, status: dict[str, Any], now: datetime, actions: Actions) -> None:
    conditions = status.pop("_conditions", [])
    previous = {cond.get("type"): cond for cond in sel.status.get("conditions") or []}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    new_conditions = []
    for ctype, ok, reason, message in conditions:
        value = "True" if ok else "False"
        prev = previous.get(ctype, {})
        changed = prev.get("status") != value
        new_conditions.append(
            {
                "type": ctype,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": stamp if changed else prev.get("lastTransitionTime", stamp),
                "observedGeneration": sel.generation,
            }
        )
    status["conditions"] = new_conditions
    status["observedGeneration"] = sel.generation
    current = {k: sel.status.get(k) for k in status}
    if current != status:
        actions.status[sel.key] = status


# --- small helpers ----------------------------------------------------------


def _cpu_node(nodes: Sequence[Mapping[str, Any]]) -> str | None:
    """Where CPU pods go: the first node without GPUs, else anywhere the scheduler likes."""
    plain = [n.name for n in cpu_nodes(nodes) if not n.has_gpu]
    return plain[0] if plain else None


def _pods_by_owner(pods: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        owner = _owner_uid(pod)
        if owner:
            out.setdefault(owner, []).append(pod)
    return out


def _owner_uid(pod: Mapping[str, Any]) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.SELECTION_KIND and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _ann(pod: Mapping[str, Any], key: str) -> str | None:
    value = (pod["metadata"].get("annotations") or {}).get(key)
    return None if value is None else str(value)


def _label(value: str | None) -> str:
    from fovea.operator.podspec import label_value

    return label_value(value or "")


def _epoch(stamp: object) -> float:
    if not isinstance(stamp, str) or not stamp:
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))
