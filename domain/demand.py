"""The planner's input, built in one place for the operator, `/validate` and the what-if route.

`build()` turns the selections to place and the cluster around them into a
`PlanInput`: each selection's `Demand` (its option's memory, its priority and
last use, where its pod runs now, its pod's requests, the nodes the scheduler
refused it), admitted per namespace under its GPU-memory quota (the
namespace's annotations, else the cluster default: `fovea.domain.quota`),
session leases applied (`fovea.domain.leases`), and every node's CPU, memory,
pod and GPU-slot room left by the pods the plan does not place
(`fovea.domain.nodes`). `PlanInput.plan()` runs `fovea.domain.placement.plan`.

The operator plans with it every pass; the API builds the same input from its
watch-fed cache, so `/validate`'s verdict and the what-if plan are the
operator's next decisions for the same world (tests/domain/test_demand.py
checks it over generated worlds). `needs_plan()` is the part of resolution both
share: whether a resolved selection takes room at all.

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fovea.domain import constants as c
from fovea.domain import keepalive, leases
from fovea.domain.budget import memory_limit_refusal
from fovea.domain.endpoints import label_value
from fovea.domain.gpus import Gpu
from fovea.domain.nodes import (
    DEFAULT_MEMORY_GIB,
    NodeCapacity,
    node_capacities,
    pod_requests,
    refusals,
)
from fovea.domain.placement import EPSILON, Demand, Outcome, Plan, Slot, plan
from fovea.domain.quota import Quota, Use, admit
from fovea.domain.resources import (
    CatalogSpec,
    DevicePolicy,
    InferenceSettings,
    LoadPolicy,
    ModelOption,
    Phase,
    SelectionSpec,
    SharingMode,
)
from fovea.domain.warm import ANNOTATION_WARM_OPTIONS, WarmGroup, warm_group

# What the API reads of a plan: it may not import the planner itself (.importlinter).
__all__ = [
    "EPSILON",
    "Demand",
    "Outcome",
    "Plan",
    "PlanInput",
    "Slot",
    "Wanted",
    "build",
    "demand",
    "needs_plan",
    "pods_by_owner",
    "threshold_of",
    "wanted",
    "warm_group_of",
]

Raw = Mapping[str, Any]
DEFAULT_THRESHOLD = 0.8  # the planner's threshold when no catalog says one


@dataclass(frozen=True)
class Wanted:
    """One selection the planner places, its option resolved (see `needs_plan`)."""

    key: str  # "namespace/name"
    uid: str  # its pods' controller owner reference
    spec: SelectionSpec
    option: ModelOption
    status: Raw  # as stored (camelCase): its last use and phase
    images: frozenset[str] = frozenset()  # what its pod runs (`normalize_image` form)


@dataclass(frozen=True)
class PlanInput:
    """Everything `placement.plan` takes, and what the quotas decided before it."""

    gpus: tuple[Gpu, ...]
    demands: tuple[Demand, ...]  # admitted under the quotas, session leases applied
    threshold: float
    sharing: SharingMode
    nodes: tuple[NodeCapacity, ...]
    refused: Mapping[str, str] = field(default_factory=dict)  # key -> the quota's message
    use: Mapping[str, Use] = field(default_factory=dict)  # namespace -> use of its quota

    def plan(self) -> Plan:
        """The plan of these demands (the operator's next placements), computed once: it is
        pure, and the what-if and /validate of one input both read it."""
        done: Plan | None = self.__dict__.get("_plan")
        if done is None:
            done = plan(
                self.gpus,
                self.demands,
                threshold=self.threshold,
                sharing=self.sharing,
                nodes=self.nodes,
            )
            object.__setattr__(self, "_plan", done)  # a cache, not a field: still frozen
        return done


def wanted(
    key: str,
    uid: str,
    spec: SelectionSpec,
    option: ModelOption,
    status: Raw,
    images: frozenset[str] = frozenset(),
    warm: WarmGroup | None = None,
) -> Wanted:
    """One selection as the planner takes it (the operator's pass, /validate, the what-if).

    A warm pod (`warm`: the option's warm group, when warm switches are on) requests its
    group's largest memory, so the plan counts that: what the pod requests.
    """
    if warm is not None:
        option = option.model_copy(update={"cpu_memory_gb": warm.memory_gb})
    return Wanted(key, uid, spec, option, status, images)


def warm_group_of(
    catalog: CatalogSpec,
    spec: SelectionSpec,
    *,
    sharing: SharingMode | None,
    default_memory_gib: float = DEFAULT_MEMORY_GIB,
    dra_time_sliced: bool = False,
) -> WarmGroup | None:
    """The warm group of the selection's option (when warm switches are on), or None."""
    task = catalog.tasks.get(spec.task)
    if task is None or not spec.model:
        return None
    return warm_group(
        task.options,
        spec.model,
        sharing=sharing,
        default_memory_gib=default_memory_gib,
        dra_time_sliced=dra_time_sliced,
    )


def build(
    wanted: Iterable[Wanted],
    *,
    gpus: Sequence[Gpu],
    nodes: Sequence[Raw],
    model_pods: Sequence[Raw],
    other_pods: Sequence[Raw] = (),
    quotas: Mapping[str, Quota],
    session_leases: frozenset[str] = frozenset(),
    threshold: float = DEFAULT_THRESHOLD,
    sharing: SharingMode,
    default_memory_gib: float = DEFAULT_MEMORY_GIB,
) -> PlanInput:
    """The planner's input for `wanted` in this cluster.

    `model_pods`: the managed model pods (every namespace planned); `other_pods`:
    the other pods bound to nodes (a pod in both counts once). `quotas`: each
    namespace's quota with the cluster default already applied (`namespace_quotas`);
    `session_leases`: the "namespace/selection" keys of live session leases.
    """
    wanted = list(wanted)
    owned = pods_by_owner(model_pods)
    demands = [demand(w, owned.get(w.uid, []), default_memory_gib) for w in wanted]
    admission = admit(demands, quotas)
    planned = {_pod_key(p) for w in wanted for p in owned.get(w.uid, [])}
    every = {_pod_key(p): p for p in [*model_pods, *other_pods]}
    unplanned = [p for key, p in sorted(every.items()) if key not in planned]
    return PlanInput(
        gpus=tuple(gpus),
        demands=tuple(leases.protect(admission.admitted, session_leases)),
        threshold=threshold,
        sharing=SharingMode(sharing),
        nodes=tuple(node_capacities(nodes, unplanned)),
        refused=admission.refused,
        use=admission.use,
    )


def demand(w: Wanted, own_pods: Sequence[Raw], default_memory_gib: float) -> Demand:
    """The planner's view of one selection.

    Where it runs now is where its pod of the selected model is planned (the
    pod's annotations); its last use is the later of the status's and the model
    pod's report; the nodes the scheduler refused its pods are excluded.
    """
    requests = pod_requests(w.option, default_memory_gib)  # what the operator's pod requests
    current = None
    for pod in own_pods:
        ann = pod["metadata"].get("annotations", {})
        label = pod["metadata"].get("labels", {}).get(c.LABEL_MODEL)
        warm = (ann.get(ANNOTATION_WARM_OPTIONS) or "").split(",")  # a warm pod: any member
        if label == label_value(w.spec.model or "") or (w.spec.model or "") in warm:
            gpu = ann.get(c.ANNOTATION_PLANNED_GPU, "")
            current = Slot(ann.get(c.ANNOTATION_PLANNED_NODE, ""), int(gpu) if gpu else None)
            break
    return Demand(
        key=w.key,
        task=w.spec.task,
        model=w.spec.model or "",
        vram_gib=w.option.vram_gib,
        priority=w.spec.priority,
        last_used=max(
            _epoch(w.status.get("lastUsed")),
            _epoch((w.status.get("runtime") or {}).get("lastUsed")),
        ),
        device_policy=DevicePolicy(w.spec.device_policy),
        cpu_memory_gib=w.option.cpu_memory_gb,
        current=current,
        was_evicted=w.status.get("phase") == Phase.EVICTED.value,
        cpu_millis=requests.cpu_millis,
        memory_mib=requests.memory_mib,
        excluded_nodes=refusals(own_pods).nodes,
        images=w.images,
    )


def needs_plan(
    spec: SelectionSpec,
    option: ModelOption | None,
    inference: InferenceSettings,
    status: Raw,
    now: float,
) -> bool:
    """Whether a selection whose catalog has `option` takes room (the operator plans it).

    Not: no option, an external API, over `max_memory_per_model`, an on-demand
    model nobody asked for, or one idle past its keepAlive. (The operator also
    refuses an image outside its allow-list, which only it knows.)
    """
    if option is None or option.is_external or not spec.model:
        return False
    if memory_limit_refusal(spec.model, option, inference) is not None:
        return False
    if spec.effective_load_policy(inference) == LoadPolicy.ON_DEMAND and not spec.wanted:
        return False
    return keepalive.for_selection(spec, option, inference, status, now) is None


def threshold_of(catalogs: Iterable[CatalogSpec]) -> float:
    """The plan's threshold: the lowest `offload_threshold` of the catalogs in use."""
    return min((cat.inference.offload_threshold for cat in catalogs), default=DEFAULT_THRESHOLD)


def pods_by_owner(pods: Iterable[Raw]) -> dict[str, list[Raw]]:
    """Managed pods by their controlling ModelSelection's uid, each list sorted by name."""
    out: dict[str, list[Raw]] = {}
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == c.SELECTION_KIND and ref.get("controller"):
                out.setdefault(str(ref.get("uid")), []).append(pod)
                break
    return out


def _pod_key(pod: Raw) -> tuple[str, str]:
    return (str(pod["metadata"]["namespace"]), str(pod["metadata"]["name"]))


def _epoch(stamp: object) -> float:
    if not isinstance(stamp, str) or not stamp:
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
