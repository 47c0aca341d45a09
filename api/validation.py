"""POST /api/models/validate: the operator's own decisions first, the planner's prediction after.

`valid` means: the operator places every selected model of this namespace
that needs a GPU on a GPU. For each selection the answer comes from

1. the operator's decision, when its status is current (its
   `observedGeneration` is the selection's generation and its `model` the
   selected one): a model the operator holds on a GPU is placed; one it
   evicted, could not schedule or sent to the CPU for want of memory is not,
   and the warning quotes the operator's reason;
2. otherwise (the operator has not decided yet) the operator's next plan:
   the planner's input built as the operator builds it (`fovea.domain.demand`,
   fed by `fovea.api.planning` from every namespace's selections, catalogs,
   model pods and other pods on the nodes, quotas with the cluster default,
   and the live session leases), planned, and read by `fovea.domain.budget`.

Every warning about a model not on a GPU names the model, the GPUs it could
use and what holds them ("fovea-gpu-1 GPU 0 holds team-a/summarizer (60.0 GB)").
The contract's fields keep their meaning; extras: `scope` (whether other
namespaces were visible) and, per placement, `decided_by` ("operator" or
"prediction").
"""

from __future__ import annotations

from typing import Any

from fovea.api import planning
from fovea.api.quota_view import quota_view
from fovea.api.responses import GpuView, holders, planned_gpu
from fovea.api.state import ClusterState, Selection
from fovea.domain import budget, demand
from fovea.domain.conditions import ConditionType, Outcome, Phase, Reason
from fovea.domain.demand import EPSILON
from fovea.domain.resources import CatalogSpec
from fovea.domain.units import format_gb

# The operator's phases that mean "placed on a GPU" once current (node and GPU index set).
PLACED = frozenset({Phase.SCHEDULING, Phase.LOADING, Phase.READY})
# The operator's phases that mean "not on a GPU for want of room".
DISPLACED = {
    Phase.EVICTED: Outcome.EVICTED.value,
    Phase.UNSCHEDULABLE: "not placed on a GPU",
    Phase.CPU_FALLBACK: "on the CPU instead of a GPU",
}


def validate_body(
    state: ClusterState, now: float, planned: demand.PlanInput | None = None
) -> dict[str, Any]:
    """The /validate body for `state` (one selection per task, the one /config reports).

    `now` (epoch seconds) decides which session leases are live and which on-demand
    models are idle, as it does for the operator. `planned`: the planner's input of
    `state` at `now` when the caller built it already (the what-if plans it once).
    """
    catalog = state.catalog or CatalogSpec()
    selected = [
        budget.Selected(key=f"{state.namespace}/{sel.name}", spec=sel.spec, status=sel.status)
        for _, sel in sorted(state.by_task.items())
    ]
    threshold = catalog.inference.offload_threshold
    held = holders(state)
    planned = planning.plan_input(state, now) if planned is None else planned
    gpus = GpuView(gpus=planned.gpus, simulated=any(g.simulated for g in planned.gpus))
    body = budget.validate(catalog, selected, planned).model_dump(mode="json")
    placements: dict[str, dict[str, Any]] = body["placements"]
    refused = [w for w in body["warnings"] if w.endswith("; the operator will not load it")]
    refused_tasks = {w.split(":", 1)[0] for w in refused}
    missing: dict[str, str] = {}  # task -> warning, for models not on a GPU
    for task, view in placements.items():
        if task in refused_tasks:
            continue  # the operator will not load it at all: its own warning says why
        needs_gpu = body["model_requirements"][task]["vram_gb"] > 0
        sel = state.by_task[task]
        view["decided_by"] = "prediction"
        decided = _operator_decision(sel)
        vram = _declared(catalog, sel)
        if decided is not None and needs_gpu:
            view["decided_by"] = "operator"
            status = sel.status
            view.update(reason=status.message or view["reason"])
            if decided in PLACED:
                view.update(outcome=Outcome.GPU, node=status.node, gpu_index=planned_gpu(status))
                continue
            view.update(outcome=_outcome(decided), node=status.node, gpu_index=None)
            said = status.message or "no reason given"
            if _over_quota(sel):  # the quota refused it, not the GPUs: its message names it
                missing[task] = (
                    f"{task}: {sel.spec.model} ({format_gb(vram)} GB) is over its namespace's "
                    f"GPU-memory quota (the operator's decision): {said}"
                )
                continue
            missing[task] = (
                f"{task}: {sel.spec.model} ({format_gb(vram)} GB) is {DISPLACED[decided]} "
                f"(the operator's decision): {said}; "
                f"{_holding_text(gpus, held, vram, threshold)}"
            )
            continue
        if needs_gpu and view["outcome"] != Outcome.GPU and view["reason"] != budget.NOT_PLANNED:
            over_quota = f"{state.namespace}/{sel.name}" in planned.refused
            head = f"{task}: {sel.spec.model} ({format_gb(vram)} GB)"
            if over_quota:  # the quota refused it, not the GPUs: its reason names it
                missing[task] = f"{head} is over its namespace's GPU-memory quota: {view['reason']}"
            else:
                missing[task] = (
                    f"{head} cannot be placed on a GPU: {view['reason']}; "
                    f"{_holding_text(gpus, held, vram, threshold)}"
                )

    valid = not missing and not refused
    totals = [
        w
        for w in body["warnings"]
        if w.startswith("Total required VRAM") or w.endswith("; it is not counted")
    ]
    warnings = [w for w in totals if w.startswith("Total required VRAM")]
    if not valid:
        warnings.append(budget.CONSIDER)
    warnings.extend(missing[task] for task in sorted(missing))
    warnings.extend(refused)
    warnings.extend(w for w in totals if w.endswith("; it is not counted"))
    body["valid"] = valid
    body["warnings"] = warnings
    body["scope"] = "cluster" if state.cluster_wide else "namespace"
    body["quota"] = quota_view(state)
    return body


def _operator_decision(sel: Selection) -> Phase | None:
    """The operator's phase for the selection as it is now; None when not (yet) decided."""
    status = sel.status
    if status.observed_generation is None or status.observed_generation < sel.generation:
        return None
    if status.model != sel.spec.model:
        return None
    phase = Phase(status.phase)
    if phase in PLACED and status.node is not None and planned_gpu(status) is not None:
        return phase
    if phase in DISPLACED:
        return phase
    return None  # pending, failed, unselected...: the prediction stands


def _outcome(phase: Phase) -> str:
    outcome = {Phase.EVICTED: Outcome.EVICTED, Phase.CPU_FALLBACK: Outcome.CPU}
    return str(outcome.get(phase, Outcome.UNSCHEDULABLE))


def _over_quota(sel: Selection) -> bool:
    """Whether the operator refused the selection for its namespace's GPU-memory quota."""
    return any(
        c.type == ConditionType.SCHEDULED and c.reason == Reason.QUOTA_EXCEEDED
        for c in sel.status.conditions
    )


def _declared(catalog: CatalogSpec, sel: Selection) -> float:
    option = catalog.option(sel.spec.task, sel.spec.model or "")
    return option.vram_gib if option is not None else 0.0


def _size(sel: Selection) -> float:
    """What a holder takes on its GPU: measured if reported, else declared."""
    runtime = sel.status.runtime
    if runtime is not None and runtime.measured_memory_gb is not None:
        return max(runtime.measured_memory_gb, sel.status.declared_memory_gb or 0.0)
    return sel.status.declared_memory_gb or sel.status.measured_memory_gb or 0.0


def _holding_text(
    gpus: GpuView, held: list[tuple[str, Selection]], vram: float, threshold: float
) -> str:
    """Which GPUs could take `vram` GB and what holds each of them."""
    big = [g for g in gpus.gpus if vram <= g.memory_gib * threshold + EPSILON]
    if not big:
        return f"no GPU can take {format_gb(vram)} GB below the {threshold:.0%} threshold"
    parts = []
    for g in big:
        here = [
            f"{key} ({format_gb(_size(s))} GB)"
            for key, s in held
            if (s.status.node, planned_gpu(s.status)) == (g.node, g.index)
        ]
        holds = ", ".join(here) if here else "nothing"
        parts.append(f"{g.node} GPU {g.index} ({format_gb(g.memory_gib)} GB) holds {holds}")
    return "; ".join(parts)
