"""POST /api/models/validate: the operator's own decisions first, the planner's prediction after.

`valid` means: the operator places every selected model of this namespace
that needs a GPU on a GPU. For each selection the answer comes from

1. the operator's decision, when its status is current (its
   `observedGeneration` is the selection's generation and its `model` the
   selected one): a model the operator holds on a GPU is placed; one it
   evicted, could not schedule or sent to the CPU for want of memory is not,
   and the warning quotes the operator's reason;
2. otherwise (the operator has not decided yet) the planner's prediction
   for this namespace (`fovea.domain.budget`) on what the other namespaces'
   selections leave free (their statuses, read cluster-wide, say what they
   hold on which GPU); it does not predict evicting them.

Every warning about a model not on a GPU names the model, the GPUs it could
use and what holds them ("fovea-gpu-1 GPU 0 holds team-a/summarizer (60.0 GB)").
The contract's fields keep their meaning; extras: `scope` (whether other
namespaces were visible) and, per placement, `decided_by` ("operator" or
"prediction").
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fovea.api.quota_view import quota_view
from fovea.api.responses import GpuView, holders, planned_gpu
from fovea.api.state import ClusterState, Selection
from fovea.domain import budget
from fovea.domain.gpus import Gpu
from fovea.domain.placement import EPSILON
from fovea.domain.resources import CatalogSpec, Phase, SharingMode
from fovea.domain.units import format_gb, round_gb

Slot = tuple[str, int]  # (node, GPU index)
# The operator's phases that mean "placed on a GPU" once current (node and GPU index set).
PLACED = frozenset({Phase.SCHEDULING, Phase.LOADING, Phase.READY})
# The operator's phases that mean "not on a GPU for want of room".
DISPLACED = {
    Phase.EVICTED: "evicted",
    Phase.UNSCHEDULABLE: "not placed on a GPU",
    Phase.CPU_FALLBACK: "on the CPU instead of a GPU",
}


def validate_body(state: ClusterState, gpus: GpuView) -> dict[str, Any]:
    """The /validate body for `state` (one selection per task, the one /config reports)."""
    catalog = state.catalog or CatalogSpec()
    selected = [
        budget.Selected(key=f"{state.namespace}/{sel.name}", spec=sel.spec, status=sel.status)
        for _, sel in sorted(state.by_task.items())
    ]
    threshold = catalog.inference.offload_threshold
    held = holders(state)
    own_prefix = f"{state.namespace}/"
    by_others = _held_by_others(held, own_prefix)
    # The contract's totals are of the GPUs as they are; the prediction plans this
    # namespace on what the other namespaces leave free (without evicting them).
    body = budget.validate(catalog, selected, gpus.gpus).model_dump(mode="json")
    room = [_leftover(g, by_others, threshold, catalog.sharing_mode) for g in gpus.gpus]
    predicted = budget.validate(catalog, selected, room).model_dump(mode="json")
    body["placements"] = predicted["placements"]
    body["gpus"] = [
        {
            **full,
            "used_gb": round_gb(plan["used_gb"] + by_others.get((full["node"], full["index"]), 0)),
            "free_gb": round_gb(
                max(
                    0.0,
                    full["capacity_gb"]
                    - plan["used_gb"]
                    - by_others.get((full["node"], full["index"]), 0.0),
                )
            ),
            "tasks": plan["tasks"],
        }
        for full, plan in zip(body["gpus"], predicted["gpus"], strict=True)
    ]
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
                view.update(outcome="gpu", node=status.node, gpu_index=planned_gpu(status))
                continue
            view.update(outcome=_outcome(decided), node=status.node, gpu_index=None)
            missing[task] = (
                f"{task}: {sel.spec.model} ({format_gb(vram)} GB) is {DISPLACED[decided]} "
                f"(the operator's decision): {status.message or 'no reason given'}; "
                f"{_holding_text(gpus, held, vram, threshold)}"
            )
            continue
        if needs_gpu and view["outcome"] != "gpu":
            missing[task] = (
                f"{task}: {sel.spec.model} ({format_gb(vram)} GB) cannot be placed on a GPU: "
                f"{view['reason']}; {_holding_text(gpus, held, vram, threshold)}"
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


def _held_by_others(held: list[tuple[str, Selection]], own_prefix: str) -> dict[Slot, float]:
    """GiB the other namespaces' selections hold per (node, GPU index)."""
    out: dict[Slot, float] = {}
    for key, sel in held:
        index = planned_gpu(sel.status)
        if key.startswith(own_prefix) or sel.status.node is None or index is None:
            continue
        slot = (sel.status.node, index)
        out[slot] = out.get(slot, 0.0) + _size(sel)
    return out


def _leftover(gpu: Gpu, held: dict[Slot, float], threshold: float, mode: str) -> Gpu:
    """The GPU as this namespace can use it: what other namespaces hold there taken away.

    The planner allows `threshold * memory`; shrinking the memory by `held /
    threshold` leaves exactly `threshold * memory - held`. One model per GPU
    (`whole`): a GPU held by another namespace has no room at all.
    """
    taken = held.get((gpu.node, gpu.index), 0.0)
    if not taken:
        return gpu
    if mode == SharingMode.WHOLE or threshold <= 0:
        return dataclasses.replace(gpu, memory_gib=0.0)
    return dataclasses.replace(gpu, memory_gib=max(0.0, gpu.memory_gib - taken / threshold))


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
    return {Phase.EVICTED: "evicted", Phase.CPU_FALLBACK: "cpu"}.get(phase, "unschedulable")


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
