"""The operator's decision: a snapshot of the cluster in, typed decisions out.

Pure and level-based: it looks at every catalog, selection, node and model pod
at once, plans placement for all selections together (`fovea.domain.placement`),
and decides, per selection, the pod it should have, the pods to keep and the
status to write (conditions included), and the Events its condition
transitions tell; per catalog, its status. `Decisions.actions()` flattens that
into the `Actions` the executor (`fovea.operator.cluster`) carries out. The
time is an input, so tests and retries are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from fovea.domain import constants as c
from fovea.domain import degraded, dra, keepalive, leases, placement
from fovea.domain.budget import memory_limit_refusal
from fovea.domain.conditions import (
    MAX_EVENT_MESSAGE,
    ConditionStatus,
    ConditionType,
    ConditionValue,
    EventType,
    Reason,
    RuntimeState,
    WeightsPhase,
    set_condition,
    transitioned,
    truncate,
)
from fovea.domain.gpus import Gpu, cpu_nodes, gpus_from_nodes
from fovea.domain.nodes import Refusals, node_capacities, pod_requests, refusals, unschedulable
from fovea.domain.placement import Outcome
from fovea.domain.quota import Quota, Use, admit
from fovea.domain.resources import (
    AllocatedDeviceStatus,
    CatalogSpec,
    CatalogStatus,
    Condition,
    DevicePolicy,
    GpuOverride,
    LoadPolicy,
    ModelOption,
    Phase,
    SelectionSpec,
    SelectionStatus,
    SharingMode,
)
from fovea.operator.claims import ClaimUse, ClaimWrites, plan_claims
from fovea.operator.images import image_refusal
from fovea.operator.podspec import (
    PodSettings,
    SelectionRef,
    Target,
    build_pod,
    label_value,
    pod_images,
)
from fovea.operator.weights_pod import WeightsSettings
from fovea.operator.weights_status import progress_text, weights_status

Key = tuple[str, str]  # (namespace, name)
Raw = Mapping[str, Any]
NOT_MEASURED = "memory not measured"


@dataclass(frozen=True)
class Selection:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: SelectionSpec | None  # None: the stored object does not parse
    status: Raw
    spec_error: str | None = None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Catalog:
    namespace: str
    name: str
    spec: Raw  # as stored; parsed here
    uid: str = ""
    generation: int = 0
    status: Raw = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class World:
    """Everything the operator reads, as plain data."""

    catalogs: Mapping[Key, Catalog]
    selections: Sequence[Selection]
    nodes: Sequence[Raw]
    pods: Sequence[Raw]  # model-server pods managed by fovea-models
    now: datetime = field(default_factory=lambda: datetime.fromtimestamp(0, UTC))
    quotas: Mapping[str, Quota] = field(default_factory=dict)  # namespace -> its quota
    # Pod creations the API server refused: selection -> (reason, message), from the executor.
    write_failures: Mapping[Key, tuple[str, str]] = field(default_factory=dict)
    # Pods bound to nodes in every namespace (when the operator may list them): what else
    # holds the nodes' CPU, memory, pods and GPU slots.
    node_pods: Sequence[Raw] = ()
    # "namespace/selection" of live session leases (fovea.domain.leases): not evicted for peers.
    session_leases: frozenset[str] = frozenset()
    # DRA (fovea.domain.dra): whether the cluster has the DeviceClass gpu.nvidia.com with
    # devices, the GPU devices its ResourceSlices publish, and the managed ResourceClaims.
    dra_available: bool = False
    dra_devices: Sequence[dra.Device] = ()
    claims: Sequence[Raw] = ()


@dataclass(frozen=True)
class Event:
    """An Event about one object; posted only once that object's status write succeeded."""

    namespace: str
    name: str
    uid: str
    type: EventType
    reason: Reason
    message: str  # at most 1 KiB
    kind: str = c.SELECTION_KIND

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class SelectionDecision:
    """What one selection should look like, and what writing it takes."""

    key: Key
    desired_pod: Raw | None  # the pod the selection should have (None: none)
    create_pod: bool  # create `desired_pod` now (False: it exists, or waits for room)
    keep: frozenset[Key]  # its pods that stay for now (the desired one included)
    status: SelectionStatus  # the operator's part of the status (runtime is the pod's)
    patch: Raw | None  # the merge patch that writes `status`; None: already current
    events: tuple[Event, ...]  # what the condition transitions tell


@dataclass(frozen=True)
class CatalogDecision:
    key: Key
    status: CatalogStatus
    patch: Raw | None  # None: already current
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Decisions:
    selections: tuple[SelectionDecision, ...]
    catalogs: tuple[CatalogDecision, ...]
    delete: tuple[Key, ...]  # managed pods no selection keeps (old models, orphans), sorted
    quota_use: Mapping[str, Use] = field(default_factory=dict)  # namespace -> use of its quota
    claims: ClaimWrites = field(default_factory=ClaimWrites)  # dra mode (fovea.operator.claims)

    def actions(self) -> Actions:
        """The flat work list the executor carries out."""
        out = Actions(delete=list(self.delete), quota_use=dict(self.quota_use))
        out.create_claims = list(self.claims.create)
        out.delete_claims = list(self.claims.delete)
        for d in self.selections:
            if d.desired_pod is not None:
                out.namespaces.add(d.key[0])
                if d.create_pod:
                    out.create.append(dict(d.desired_pod))
            if d.patch is not None:
                out.status[d.key] = dict(d.patch)
            out.events.extend(d.events)
        for cd in self.catalogs:
            if cd.patch is not None:
                out.catalog_status[cd.key] = dict(cd.patch)
            out.events.extend(cd.events)
        return out


@dataclass
class Actions:
    """The executor's input: an Event goes out only after its object's status write."""

    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[Key] = field(default_factory=list)
    status: dict[Key, dict[str, Any]] = field(default_factory=dict)  # ModelSelection merge patches
    catalog_status: dict[Key, dict[str, Any]] = field(default_factory=dict)  # ModelCatalog
    events: list[Event] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)  # where model pods need their identity
    quota_use: dict[str, Use] = field(default_factory=dict)  # for the quota metrics
    # dra mode: ResourceClaims to create (before pods) and delete (after pods).
    create_claims: list[dict[str, Any]] = field(default_factory=list)
    delete_claims: list[Key] = field(default_factory=list)

    def __bool__(self) -> bool:
        claims = self.create_claims or self.delete_claims
        return bool(self.create or self.delete or self.status or self.catalog_status or claims)


@dataclass(frozen=True)
class Problem:
    """Why a selection cannot be planned (or needs no plan: an external API)."""

    phase: Phase
    reason: Reason
    message: str
    idle_unloaded_at: str | None = None  # status.idleUnloadedAt (keepAlive)


@dataclass(frozen=True)
class Resolved:
    sel: Selection
    option: ModelOption | None
    catalog: CatalogSpec | None
    problem: Problem | None  # None: plannable


def reconcile(world: World, settings: PodSettings) -> Decisions:
    """Decide everything that brings the cluster to the planned state."""
    settings = replace(settings, sharing_mode=sharing_mode(world, settings))
    catalogs, catalog_errors = _parse_catalogs(world.catalogs)
    images = (*settings.allowed_images, settings.image)  # the operator's own image always runs
    resolved = [_resolve(sel, catalogs, catalog_errors, images) for sel in world.selections]
    resolved = [_idle(r, world.now) for r in resolved]  # keepAlive: idle on-demand models go
    pods_by_owner = _pods_by_owner(world.pods)
    demands = [
        _demand(r, pods_by_owner.get(r.sel.uid, []), settings)
        for r in resolved
        if _needs_compute(r)
    ]
    admission = admit(demands, world.quotas)
    thresholds = [r.catalog.inference.offload_threshold for r in resolved if r.catalog]
    overrides = [o for cat in catalogs.values() for o in cat.gpu_overrides]
    result = placement.plan(
        _gpus(world, overrides, settings),
        leases.protect(admission.admitted, world.session_leases),
        threshold=min(thresholds, default=0.8),
        sharing=sharing_mode(world, settings),
        nodes=node_capacities(world.nodes, _unplanned_pods(world, resolved, pods_by_owner)),
    )
    moves = {m.key: m for m in result.moves}
    stamp = world.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    cpu_node = _cpu_node(world.nodes)
    decisions = []
    uses: list[ClaimUse] = []  # dra mode: the claim of each desired GPU pod
    for r in resolved:
        refused = admission.refused.get(_key_str(r.sel))
        if refused is not None:  # over its namespace's GPU-memory quota
            r = Resolved(r.sel, r.option, r.catalog, _quota_problem(refused))
        place = result.placements.get(_key_str(r.sel))
        spare = result.spare_gib(place.node, place.gpu_index) if place and place.node else 0.0
        own = pods_by_owner.get(r.sel.uid, [])
        home = place.node if place and place.outcome == Outcome.CPU and place.node else cpu_node
        claim = _claim(r, place, world, settings)
        decided = _decide(r, place, spare, home, own, settings, claim.name if claim else None)
        if claim is not None and decided.desired_pod is not None:
            uses.append(ClaimUse(claim, r.sel.name, r.sel.uid))
            decided = _allocated(decided, claim, world)
        decided = _scheduler_refused(r.sel, decided, refusals(own))
        decided = replace(decided, degraded=_degraded(r, place, result))
        if decided.create_pod and _gpu_still_held(decided.desired_pod, result, world.pods, r.sel):
            decided = replace(decided, create_pod=False)  # make-before-break: others leave first
        refusal = world.write_failures.get(r.sel.key)
        if refusal is not None and decided.create_pod:
            decided = _refused(decided, *refusal)
        decisions.append(_finish(r.sel, decided, moves.get(_key_str(r.sel)), stamp))

    keep = {k for d in decisions for k in d.keep}
    delete = sorted(
        key
        for pod in world.pods
        if (key := _pod_key(pod)) not in keep and not pod["metadata"].get("deletionTimestamp")
    )
    catalog_decisions = tuple(
        _catalog_decision(cat, catalogs.get(key), catalog_errors.get(key), stamp)
        for key, cat in sorted(world.catalogs.items())
    )
    claims = plan_claims(uses, world.pods, world.claims)
    return Decisions(tuple(decisions), catalog_decisions, tuple(delete), admission.use, claims)


def sharing_mode(world: World, settings: PodSettings) -> SharingMode:
    """The pass's sharing mode: the setting, else (auto) `dra` when the cluster speaks DRA."""
    if settings.sharing_mode is not None:
        return settings.sharing_mode
    return SharingMode.DRA if world.dra_available else SharingMode.TIME_SLICED


def _gpus(world: World, overrides: Sequence[GpuOverride], settings: PodSettings) -> list[Gpu]:
    """The GPUs to plan on; in dra mode only those a ResourceSlice publishes (a claim can pin)."""
    gpus = gpus_from_nodes(list(world.nodes), overrides)
    if settings.sharing_mode != SharingMode.DRA:
        return gpus
    return [g for g in gpus if dra.device_at(world.dra_devices, g.node, g.index) is not None]


def _claim(
    r: Resolved, place: placement.Placement | None, world: World, settings: PodSettings
) -> dra.Claim | None:
    """dra mode: the claim the selection's pod on its planned GPU references."""
    if settings.sharing_mode != SharingMode.DRA or r.option is None or place is None:
        return None
    if place.outcome != Outcome.GPU or place.node is None or place.gpu_index is None:
        return None
    device = dra.device_at(world.dra_devices, place.node, place.gpu_index)
    if device is None:
        return None
    sharing, vram = settings.dra_sharing, r.option.vram_gib
    return dra.claim_for(r.sel.namespace, r.sel.name, device, sharing, vram)


def _allocated(d: _Decided, claim: dra.Claim, world: World) -> _Decided:
    """The device the scheduler allocated to the pod's claim, once the pod is bound to a node.

    The claim is the observer: `status.allocatedDevice` and `gpuIndex` come from its
    `status.allocation` (and the device's ResourceSlice), not from the plan. A claim being
    deleted cannot be used again: the pod waits until it is gone and made anew.
    """
    obj = next((o for o in world.claims if _meta_key(o) == claim.key), None)
    if obj is not None and obj["metadata"].get("deletionTimestamp"):
        return replace(d, create_pod=False)
    pod = next((p for p in world.pods if _pod_key(p) == (claim.namespace, d.status.pod)), None)
    if obj is None or pod is None or not (pod.get("spec") or {}).get("nodeName"):
        return d
    found = dra.allocated(obj, world.dra_devices)
    if found is None:
        return d
    device = AllocatedDeviceStatus(
        uuid=found.uuid,
        index=found.index,
        driver=found.driver,
        pool=found.pool,
        device=found.device,
        claim=found.claim,
    )
    update = {"allocated_device": device, "gpu_index": found.index}
    return replace(d, status=d.status.model_copy(update=update))


def _meta_key(obj: Raw) -> Key:
    return (str(obj["metadata"].get("namespace") or ""), str(obj["metadata"].get("name") or ""))


def _quota_problem(message: str) -> Problem:
    return Problem(Phase.UNSCHEDULABLE, Reason.QUOTA_EXCEEDED, message)


def _refused(d: _Decided, reason: str, message: str) -> _Decided:
    """The API server refused the pod (a ResourceQuota, admission): Scheduled says so."""
    why = f"The API server refused pod {d.status.pod}: {reason}: {message}"
    return replace(
        d,
        status=d.status.model_copy(update={"phase": Phase.PENDING, "message": why}),
        scheduled=ConditionValue.of(ConditionType.SCHEDULED, False, Reason.POD_REFUSED, why),
    )


# --- resolution -------------------------------------------------------------


def _parse_catalogs(
    raw: Mapping[Key, Catalog],
) -> tuple[dict[Key, CatalogSpec], dict[Key, list[str]]]:
    parsed: dict[Key, CatalogSpec] = {}
    errors: dict[Key, list[str]] = {}
    for key, cat in raw.items():
        try:
            parsed[key] = CatalogSpec.model_validate(cat.spec)
        except ValidationError as exc:
            errors[key] = _all_errors(exc)
    return parsed, errors


def _resolve(
    sel: Selection,
    catalogs: Mapping[Key, CatalogSpec],
    catalog_errors: Mapping[Key, list[str]],
    allowed_images: Sequence[str],
) -> Resolved:
    if sel.spec is None:
        why = sel.spec_error or "invalid"
        return Resolved(sel, None, None, Problem(Phase.FAILED, Reason.INVALID_SPEC, why))
    spec = sel.spec
    ckey = (sel.namespace, spec.catalog)
    catalog = catalogs.get(ckey)
    if catalog is None:
        errors = catalog_errors.get(ckey)
        if errors:
            msg = f"ModelCatalog '{spec.catalog}' is invalid: {errors[0]}"
            return Resolved(sel, None, None, Problem(Phase.PENDING, Reason.CATALOG_INVALID, msg))
        msg = f"ModelCatalog '{spec.catalog}' not found in namespace '{sel.namespace}'"
        return Resolved(sel, None, None, Problem(Phase.PENDING, Reason.CATALOG_NOT_FOUND, msg))
    if spec.task not in catalog.tasks:
        msg = f"Task '{spec.task}' is not in ModelCatalog '{spec.catalog}'"
        return Resolved(sel, None, catalog, Problem(Phase.FAILED, Reason.UNKNOWN_TASK, msg))
    if not spec.model:
        msg = "No model selected"
        return Resolved(
            sel, None, catalog, Problem(Phase.UNSELECTED, Reason.NO_MODEL_SELECTED, msg)
        )
    option = catalog.option(spec.task, spec.model)
    if option is None:
        msg = f"Model '{spec.model}' not found for task '{spec.task}'"
        return Resolved(sel, None, catalog, Problem(Phase.FAILED, Reason.MODEL_NOT_FOUND, msg))
    if option.is_external:  # its key is the caller's (docs/security.md): no pod, no Secret read
        msg = f"External API model '{option.model_id}' needs no pod"
        return Resolved(sel, option, catalog, Problem(Phase.READY, Reason.EXTERNAL_API, msg))
    refusal = image_refusal(option.image, allowed_images) if option.image else None
    if refusal is not None:
        problem = Problem(Phase.FAILED, Reason.IMAGE_NOT_ALLOWED, refusal)
        return Resolved(sel, option, catalog, problem)
    refusal = memory_limit_refusal(spec.model, option, catalog.inference)
    if refusal is not None:
        problem = Problem(Phase.FAILED, Reason.EXCEEDS_MAX_MEMORY, refusal)
        return Resolved(sel, option, catalog, problem)
    policy = spec.effective_load_policy(catalog.inference)
    if policy == LoadPolicy.ON_DEMAND and not spec.wanted:
        why = " (the catalog's warmupOnStartup is false)" if spec.load_policy is None else ""
        msg = f"Load policy onDemand{why}: waits for /load or first use"
        problem = Problem(Phase.PENDING, Reason.WAITING_FOR_DEMAND, msg)
        return Resolved(sel, option, catalog, problem)
    return Resolved(sel, option, catalog, None)


def _idle(r: Resolved, now: datetime) -> Resolved:
    """An on-demand model unused for its keepAlive is unloaded (`fovea.domain.keepalive`)."""
    if r.problem is not None or r.option is None or r.sel.spec is None or r.catalog is None:
        return r
    spec, inference = r.sel.spec, r.catalog.inference
    idle = keepalive.for_selection(spec, r.option, inference, r.sel.status, now.timestamp())
    if idle is None:
        return r
    problem = Problem(Phase.PENDING, Reason.IDLE_UNLOADED, idle.message, idle.stamp)
    return replace(r, problem=problem)


def _needs_compute(r: Resolved) -> bool:
    return r.problem is None and r.option is not None


def _key_str(sel: Selection) -> str:
    return f"{sel.namespace}/{sel.name}"


def _demand(r: Resolved, own_pods: list[Raw], settings: PodSettings) -> placement.Demand:
    assert r.option is not None and r.sel.spec is not None
    requests = pod_requests(r.option, settings.default_memory_gib)  # what build_pod sets
    current = None
    for pod in own_pods:
        ann = pod["metadata"].get("annotations", {})
        if pod["metadata"].get("labels", {}).get(c.LABEL_MODEL) == label_value(
            r.sel.spec.model or ""
        ):
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
        cpu_millis=requests.cpu_millis,
        memory_mib=requests.memory_mib,
        excluded_nodes=refusals(own_pods).nodes,
        images=pod_images(r.option, settings),
    )


# --- one selection ------------------------------------------------------------


@dataclass(frozen=True)
class _Decided:
    """A selection's decision before its status is compared with what is stored."""

    status: SelectionStatus  # conditions not yet set
    scheduled: ConditionValue
    ready: ConditionValue
    desired_pod: Raw | None = None
    create_pod: bool = False
    keep: frozenset[Key] = frozenset()
    degraded: ConditionValue | None = None  # on the CPU for want of GPU memory


def _decide(
    r: Resolved,
    place: placement.Placement | None,
    spare_gib: float,
    cpu_node: str | None,
    own_pods: list[Raw],
    settings: PodSettings,
    claim: str | None = None,
) -> _Decided:
    sel, spec, option, catalog = r.sel, r.sel.spec, r.option, r.catalog
    base = SelectionStatus(
        model=spec.model if spec else None,
        model_id=option.model_id if option else None,
        declared_memory_gb=round(option.vram_gib, 3) if option else None,
        last_used=sel.status.get("lastUsed"),  # a model pod's report, or a user's patch
        observed_generation=sel.generation,
    )
    if r.problem is not None:
        p = r.problem
        external = p.reason == Reason.EXTERNAL_API
        status = base.model_copy(
            update={
                "phase": p.phase,
                "message": p.message,
                "device": "external" if external else None,
                "idle_unloaded_at": p.idle_unloaded_at,
            }
        )
        scheduled = ConditionValue.of(ConditionType.SCHEDULED, external, p.reason, p.message)
        ready = ConditionValue.of(ConditionType.READY, external, p.reason, p.message)
        return _Decided(status, scheduled, ready)
    assert place is not None and option is not None and spec is not None and catalog is not None
    if place.outcome in (Outcome.EVICTED, Outcome.UNSCHEDULABLE):
        evicted = place.outcome == Outcome.EVICTED
        phase = Phase.EVICTED if evicted else Phase.UNSCHEDULABLE
        reason = Reason.EVICTED if evicted else Reason.UNSCHEDULABLE
        status = base.model_copy(update={"phase": phase, "message": place.reason})
        return _Decided(
            status,
            ConditionValue.of(ConditionType.SCHEDULED, False, reason, place.reason),
            ConditionValue.of(ConditionType.READY, False, reason, place.reason),
        )

    on_gpu = place.outcome == Outcome.GPU
    target = Target(place.node, place.gpu_index) if on_gpu else Target(cpu_node, None)
    pod = build_pod(
        SelectionRef(sel.namespace, sel.name, sel.uid, spec.task, spec.model or ""),
        option,
        target,
        settings,
        claim=claim,
        batch_size=catalog.inference.default_batch_size,
        avoid_nodes=refusals(own_pods).nodes,
        weights=WeightsSettings.of(catalog),
    )
    name = str(pod["metadata"]["name"])
    existing = next((p for p in own_pods if p["metadata"]["name"] == name), None)
    create, keep = _handover(pod, existing, own_pods, spare_gib)
    fallback = place.outcome == Outcome.CPU and spec.device_policy != DevicePolicy.CPU
    cpu_reason = Reason.CPU_FALLBACK if fallback else Reason.ON_CPU
    sched_reason = Reason.PLACED if on_gpu else cpu_reason
    scheduled = ConditionValue.of(ConditionType.SCHEDULED, True, sched_reason, place.reason)

    runtime = sel.status.get("runtime") or {}
    current = runtime.get("pod") == name
    device = "cuda:0" if on_gpu else "cpu"  # what the pod is given (FOVEA_DEVICE)
    measured = runtime.get("measuredMemoryGb") if current else None
    load_time = runtime.get("loadTimeSeconds") if current else None
    if current and runtime.get("device"):
        device = str(runtime["device"])
    state = runtime.get("state") if current else None
    pod_ready = existing is not None and _pod_ready(existing)
    config_error = _config_error(existing) if existing is not None else None
    secret = catalog.weights_credentials.secret if catalog.weights_credentials else None
    weights = weights_status(option, runtime, current, existing, secret, sel.status.get("weights"))
    weights_phase = weights.phase if weights is not None else None
    if weights is not None and weights_phase == WeightsPhase.FAILED:
        phase = Phase.FAILED
        message = f"Weights {option.weights} could not be fetched: {weights.message or 'unknown'}"
        ready = ConditionValue.of(ConditionType.READY, False, Reason.WEIGHTS_FAILED, message)
    elif state == RuntimeState.FAILED:
        phase = Phase.FAILED
        message = f"Failed to load model: {runtime.get('reason') or 'unknown'}"
        ready = ConditionValue.of(ConditionType.READY, False, Reason.LOAD_FAILED, message)
    elif state == RuntimeState.READY and pod_ready:
        phase = Phase.CPU_FALLBACK if fallback else Phase.READY
        message = place.reason if fallback else f"{spec.model} ready on {device}"
        if runtime.get("simulatedGpu"):
            message += f" (node {target.node} has a simulated GPU: the model runs on the CPU)"
        if measured is None:
            message += f" ({NOT_MEASURED})"
        ready = ConditionValue.of(ConditionType.READY, True, Reason.LOADED, message)
    elif config_error is not None:  # e.g. a Secret or ConfigMap it names does not exist
        phase, message = Phase.PENDING, f"Pod {name} cannot start: {config_error}"
        ready = ConditionValue.of(ConditionType.READY, False, Reason.POD_CONFIG_ERROR, message)
    elif weights is not None and weights_phase == WeightsPhase.FETCHING:
        phase = Phase.LOADING
        said = f"Pod {name} is fetching the weights {option.weights} into the cache"
        message = f"{said}: {progress_text(weights)}"
        ready = ConditionValue.of(ConditionType.READY, False, Reason.WEIGHTS_FETCHING, said)
    elif existing is not None and existing.get("spec", {}).get("nodeName"):
        phase, message = Phase.LOADING, f"Pod {name} is loading {option.model_id}"
        ready = ConditionValue.of(ConditionType.READY, False, Reason.LOADING, message)
    else:
        phase, message = Phase.SCHEDULING, f"Pod {name} is waiting to be scheduled"
        ready = ConditionValue.of(ConditionType.READY, False, Reason.POD_SCHEDULING, message)
    status = base.model_copy(
        update={
            "phase": phase,
            "message": message,
            "node": target.node,
            "planned_gpu_index": target.gpu_index,
            "gpu_index": _visible_gpu(device) if current else None,
            "pod": name,
            "device": device,
            "measured_memory_gb": measured,
            "load_time_seconds": load_time,
            "weights": weights,
        }
    )
    if current and runtime.get("lastUsed"):
        status = status.model_copy(update={"last_used": runtime["lastUsed"]})
    return _Decided(status, scheduled, ready, pod, create, frozenset(keep))


def _degraded(
    r: Resolved, place: placement.Placement | None, result: placement.Plan
) -> ConditionValue | None:
    """Degraded=True while on the CPU for want of GPU memory (`fovea.domain.degraded`)."""
    spec, option = r.sel.spec, r.option
    if place is None or place.outcome != Outcome.CPU or spec is None or option is None:
        return None
    if r.problem is not None or spec.device_policy == DevicePolicy.CPU:
        return None  # on the CPU by choice: not degraded
    wanted = degraded.wanted_gpu(result.gpus, option.vram_gib)
    return degraded.fallback(place.reason, wanted, option.vram_gib)


def _finish(
    sel: Selection, d: _Decided, move: placement.Move | None, stamp: str
) -> SelectionDecision:
    """Set the conditions on the status, compare with what is stored, and tell the transitions."""
    previous = list(sel.status.get("conditions") or [])
    conditions = [
        Condition.model_validate(set_condition(previous, v, now=stamp, generation=sel.generation))
        for v in (d.scheduled, d.ready, *degraded.after(previous, d.degraded))
    ]
    status = d.status.model_copy(update={"conditions": conditions})
    # Only what this pass changes: a field it leaves as read is not written back, so a
    # write made since the snapshot (someone's lastUsed, say) is not reverted by a stale one.
    patch = {k: v for k, v in status_patch(status).items() if sel.status.get(k) != v}
    events = _events(sel, d, move, previous)
    key = sel.key
    if not patch:
        return SelectionDecision(key, d.desired_pod, d.create_pod, d.keep, status, None, ())
    return SelectionDecision(key, d.desired_pod, d.create_pod, d.keep, status, patch, events)


def status_patch(status: SelectionStatus) -> dict[str, Any]:
    """The merge patch of the operator's fields (null removes a field; runtime is the pod's)."""
    return status.model_dump(by_alias=True, mode="json", exclude={"runtime"})


# Ready reasons told as Events when the condition changes to them.
_TOLD = frozenset({Reason.LOADED, Reason.LOAD_FAILED, Reason.WEIGHTS_FAILED})
# Scheduled=False reasons that are a user's choice rather than a problem.
_QUIET = frozenset({Reason.NO_MODEL_SELECTED, Reason.WAITING_FOR_DEMAND, Reason.IDLE_UNLOADED})


def _events(
    sel: Selection, d: _Decided, move: placement.Move | None, previous: list[dict[str, object]]
) -> tuple[Event, ...]:
    def event(type_: EventType, reason: Reason, message: str) -> Event:
        return Event(
            sel.namespace, sel.name, sel.uid, type_, reason, truncate(message, MAX_EVENT_MESSAGE)
        )

    out = []
    s, r = d.scheduled, d.ready
    if transitioned(previous, s):
        warn = s.status == ConditionStatus.FALSE and s.reason not in _QUIET
        warn = warn or s.reason == Reason.CPU_FALLBACK
        out.append(event(EventType.WARNING if warn else EventType.NORMAL, s.reason, s.message))
    elif move is not None and s.reason == Reason.PLACED:
        out.append(event(EventType.NORMAL, Reason.RESCHEDULED, f"{move.reason}"))
    old_pod = sel.status.get("pod")
    new_pod = d.status.pod
    if (
        old_pod
        and new_pod
        and old_pod != new_pod
        and sel.status.get("model") == d.status.model
        and sel.status.get("node") == d.status.node
        and sel.status.get("plannedGpuIndex") == d.status.planned_gpu_index
    ):
        msg = f"The pod spec changed (image or settings): pod {new_pod} replaces {old_pod}"
        out.append(event(EventType.NORMAL, Reason.POD_REPLACED, msg))
    if r.reason in _TOLD and transitioned(previous, r):
        warn = r.reason in (Reason.LOAD_FAILED, Reason.WEIGHTS_FAILED)
        out.append(event(EventType.WARNING if warn else EventType.NORMAL, r.reason, r.message))
    return tuple(out)


def _handover(
    pod: Raw,
    existing: Raw | None,
    own_pods: list[Raw],
    spare_gib: float,
) -> tuple[bool, list[Key]]:
    """Make-before-break when both fit, break-before-make when they don't.

    Returns whether to create the new pod now, and which pods of the selection
    to keep for the moment (the desired one included). An old pod is kept
    while its successor loads if the successor's GPU still has room for it;
    otherwise the old pod goes first and the new one is created once the old
    one is gone. A spec change gives a new pod name, so it rolls the same way.
    """
    name = pod["metadata"]["name"]
    own = (pod["metadata"]["namespace"], name)
    # A pod the scheduler refused is on no node: it holds nothing and is not kept.
    old = [p for p in own_pods if p["metadata"]["name"] != name and unschedulable(p) is None]
    if existing is not None:
        if _pod_ready(existing):
            return False, [own]
        going = [_pod_key(p) for p in old if not p["metadata"].get("deletionTimestamp")]
        return False, [own, *going]
    gpu_old = [p for p in old if _holds_gpu(p)]
    if any(p["metadata"].get("deletionTimestamp") for p in gpu_old):
        return False, [own]  # wait until the GPU memory is really released
    room = spare_gib
    for p in gpu_old:  # only an old pod on the same GPU takes room from its successor
        if _gpu_of(p) == _gpu_of(pod):
            room -= float(_ann(p, c.ANNOTATION_VRAM_GIB) or 0)
    if room < 0:
        return False, [own]  # break-before-make: old pods are deleted, create next pass
    return True, [own] + [_pod_key(p) for p in old]


# --- what the scheduler checks and says ---------------------------------------------


def _unplanned_pods(
    world: World, resolved: Sequence[Resolved], pods_by_owner: Mapping[str, list[Raw]]
) -> list[Raw]:
    """Pods on nodes that the plan does not place: all but the planned selections' own."""
    planned = {
        _pod_key(p) for r in resolved if _needs_compute(r) for p in pods_by_owner.get(r.sel.uid, [])
    }
    every = {_pod_key(p): p for p in [*world.pods, *world.node_pods]}
    return [p for key, p in sorted(every.items()) if key not in planned]


def _scheduler_refused(sel: Selection, d: _Decided, refused: Refusals) -> _Decided:
    """The scheduler refused this selection's pod: its words go into the status.

    The planner has already re-planned the selection away from that node
    (`Demand.excluded_nodes`). When there is nowhere else, the refused pod
    stays: it is pinned to its node and the scheduler binds it once there is room.
    """
    if refused.message is None or refused.pod is None:
        return d
    said = f"the scheduler could not place pod {refused.pod}: {refused.message}"
    message = f"{d.status.message}; {said}" if d.status.message else said
    s = d.scheduled
    scheduled = ConditionValue.of(
        s.type, s.status == ConditionStatus.TRUE, s.reason, f"{s.message}; {said}"
    )
    keep = d.keep
    if d.status.phase in (Phase.UNSCHEDULABLE, Phase.EVICTED):
        keep = keep | {(sel.namespace, refused.pod)}
    status = d.status.model_copy(update={"message": message})
    return replace(d, status=status, scheduled=scheduled, keep=keep)


def _gpu_still_held(
    pod: Raw | None, result: placement.Plan, pods: Sequence[Raw], sel: Selection
) -> bool:
    """Make-before-break: other selections' pods still fill pod's GPU and are on their way out
    (moved or evicted by this plan, or terminating); the new pod waits for them to go.

    Not when one of them waits for this selection's own old pod in turn (two models
    swapping GPUs): that would wait for ever.
    """
    if pod is None or not _holds_gpu(pod):
        return False
    here = _gpu_of(pod)
    usage = result.usage(here[0] or "", int(here[1]) if here[1] else None)
    if usage is None:
        return False
    others = [p for p in pods if _holds_gpu(p) and _gpu_of(p) == here and _owner_uid(p) != sel.uid]
    held = sum(float(_ann(p, c.ANNOTATION_VRAM_GIB) or 0) for p in others)
    if (
        held + float(_ann(pod, c.ANNOTATION_VRAM_GIB) or 0)
        <= usage.capacity_gib + placement.EPSILON
    ):
        return False
    mine = {_gpu_of(p) for p in pods if _owner_uid(p) == sel.uid}
    for p in others:
        if p["metadata"].get("deletionTimestamp"):
            return True
        owner = _owner_name(p)
        target = result.placements.get(f"{p['metadata']['namespace']}/{owner}")
        slot = target.slot if target is not None else None
        going_to = (slot.node, str(slot.gpu_index)) if slot and slot.gpu_index is not None else None
        if going_to != here and going_to not in mine:
            return True
    return False


def _owner_name(pod: Raw) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.SELECTION_KIND and ref.get("controller"):
            return str(ref.get("name"))
    return None


def _gpu_of(pod: Raw) -> tuple[str | None, str | None]:
    return (_ann(pod, c.ANNOTATION_PLANNED_NODE), _ann(pod, c.ANNOTATION_PLANNED_GPU))


# --- catalogs -------------------------------------------------------------------


def _catalog_decision(
    cat: Catalog, spec: CatalogSpec | None, errors: list[str] | None, stamp: str
) -> CatalogDecision:
    previous = list(cat.status.get("conditions") or [])
    if spec is not None:
        options = {task: sorted(t.options) for task, t in sorted(spec.tasks.items())}
        count = sum(len(o) for o in options.values())
        msg = f"{len(options)} tasks, {count} options"
        value = ConditionValue.of(ConditionType.ACCEPTED, True, Reason.VALID, msg)
        problems: list[str] = []
    else:
        options, problems = {}, list(errors or ["does not parse"])
        msg = f"{len(problems)} problem(s): {problems[0]}"
        value = ConditionValue.of(ConditionType.ACCEPTED, False, Reason.INVALID, msg)
    status = CatalogStatus(
        observed_generation=cat.generation,
        conditions=[
            Condition.model_validate(
                set_condition(previous, value, now=stamp, generation=cat.generation)
            )
        ],
        options=options,
        problems=problems,
    )
    patch = status.model_dump(by_alias=True, mode="json")
    if {k: cat.status.get(k) for k in patch} == patch:
        return CatalogDecision(cat.key, status, None, ())
    events: tuple[Event, ...] = ()
    if transitioned(previous, value) and value.status != ConditionStatus.TRUE:
        events = (
            Event(
                cat.namespace,
                cat.name,
                cat.uid,
                EventType.WARNING,
                Reason.INVALID,
                truncate(msg, MAX_EVENT_MESSAGE),
                kind=c.CATALOG_KIND,
            ),
        )
    return CatalogDecision(cat.key, status, patch, events)


# --- small helpers ----------------------------------------------------------


def _visible_gpu(device: str) -> int | None:
    """The GPU index the pod reports using ("cuda:N" -> N); None on the CPU."""
    if not device.startswith("cuda"):
        return None
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


def _cpu_node(nodes: Sequence[Raw]) -> str | None:
    """Where CPU pods go: the first node without GPUs, else anywhere the scheduler likes."""
    plain = [n.name for n in cpu_nodes(nodes) if not n.has_gpu]
    return plain[0] if plain else None


def _pods_by_owner(pods: Sequence[Raw]) -> dict[str, list[Raw]]:
    out: dict[str, list[Raw]] = {}
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        owner = _owner_uid(pod)
        if owner:
            out.setdefault(owner, []).append(pod)
    return out


def _owner_uid(pod: Raw) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.SELECTION_KIND and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _pod_key(pod: Raw) -> Key:
    return (str(pod["metadata"]["namespace"]), str(pod["metadata"]["name"]))


def _holds_gpu(pod: Raw) -> bool:
    return bool(_ann(pod, c.ANNOTATION_PLANNED_GPU))


def _config_error(pod: Raw) -> str | None:
    """The kubelet's message when the pod's container cannot be created as specified."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CreateContainerConfigError":
            return str(waiting.get("message") or "CreateContainerConfigError")
    return None


def _pod_ready(pod: Raw) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _ann(pod: Raw, key: str) -> str | None:
    value = (pod["metadata"].get("annotations") or {}).get(key)
    return None if value is None else str(value)


def _epoch(stamp: object) -> float:
    if not isinstance(stamp, str) or not stamp:
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _all_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        out.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return out
