"""What-if validation: `/validate` as if some tasks selected other models, plus the plan.

`POST /api/models/validate?task_type=T&model_name=M` (repeatable, in pairs; the
camelCase spellings `taskType`/`modelName` too) answers the contract's body for
the selections as they would be after the change, and a `plan`:

- `gpus`: per GPU, which models it would hold (key, task, model, GB);
- `evicted`: models that hold a GPU now and would lose it, for whom (the
  models the plan puts on that GPU that are not there now) and why;
- `cpu`: models that would run on the CPU instead of a GPU, and why;
- `moves`: running models the plan would put on another GPU.

The plan is `fovea.domain.placement.plan()`, the operator's own planner, run
over this namespace's selections after the change and what the other
namespaces' selections hold now (their priority, last use and GPU), on the
cluster's GPUs. Nothing is written; everything but `what_if_json` is pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from fovea.api import inspect
from fovea.api.errors import BadRequest
from fovea.api.responses import GpuView, holders, planned_gpu, to_json
from fovea.api.service import ModelService
from fovea.api.state import ClusterState, Selection
from fovea.api.validation import validate_body
from fovea.domain import budget, placement
from fovea.domain.placement import Outcome
from fovea.domain.resources import CatalogSpec, DevicePolicy, LoadPolicy, Phase, SelectionStatus
from fovea.domain.units import round_gb

# Phases in which the status's node and planned GPU are a GPU the model holds (as budget's).
_HOLDING = frozenset({Phase.SCHEDULING, Phase.LOADING, Phase.READY})


def what_if_json(service: ModelService, tasks: Sequence[str], models: Sequence[str]) -> bytes:
    """The what-if body on the current snapshot; the errors of /validate and /select."""
    changes = pairs(tasks, models)
    snap = service.synced_snapshot()
    if snap.state.catalog is None:
        service.validate_json()  # raises CatalogUnreadable with the reason
    return to_json(what_if_body(snap.state, snap.gpus, changes))


def pairs(tasks: Sequence[str], models: Sequence[str]) -> dict[str, str]:
    """The repeated task_type/model_name parameters as {task: model}, in order.

    BadRequest when they do not pair up or one task is given two models.
    """
    if len(tasks) != len(models):
        raise BadRequest(
            f"task_type and model_name come in pairs: {len(tasks)} task_type, "
            f"{len(models)} model_name"
        )
    out: dict[str, str] = {}
    for task, model in zip(tasks, models, strict=True):
        if not task or not model:
            raise BadRequest("Empty task_type or model_name")
        if out.get(task, model) != model:
            raise BadRequest(f"Conflicting values for task_type {task}: {out[task]}, {model}")
        out[task] = model
    return out


def what_if_body(state: ClusterState, gpus: GpuView, changes: Mapping[str, str]) -> dict[str, Any]:
    """The /validate body for `state` with `changes` applied, plus `what_if` and `plan`.

    InvalidTaskType or ModelNotFound when a task or model is not in the catalog.
    A task that already selects the model keeps its status (and its GPU).
    """
    changed = {
        task: model
        for task, model in changes.items()
        if (sel := state.selection_for(task)) is None or sel.spec.model != model
    }
    inspect.with_selections(state, dict(changes))  # refuses unknown tasks and models
    after = inspect.with_selections(state, changed)
    body = validate_body(after, gpus)
    body["what_if"] = dict(changes)
    body["plan"] = plan_view(state, after, gpus)
    return body


def plan_view(before: ClusterState, after: ClusterState, gpus: GpuView) -> dict[str, Any]:
    """The operator's plan for `after`, told against what holds the GPUs in `before`."""
    catalog = after.catalog or CatalogSpec()
    own = _own_demands(after, catalog)
    demands = [*own.values(), *_peer_demands(after)]
    result = placement.plan(
        gpus.gpus,
        demands,
        threshold=catalog.inference.offload_threshold,
        sharing=catalog.sharing_mode,
    )
    by_key = {d.key: d for d in demands}
    now = {key: (sel.status.node or "", planned_gpu(sel.status)) for key, sel in holders(before)}
    changed_keys = {key for key, d in own.items() if _model_before(before, d.task) != d.model}
    gpu_rows = [
        {
            "node": g.node,
            "index": g.index,
            "simulated": g.simulated,
            "capacity_gb": round_gb(g.capacity_gib),
            "used_gb": round_gb(g.used_gib),
            "models": [_model_row(by_key[k]) for k in g.keys],
        }
        for g in result.gpus
    ]
    evicted = []
    for key, slot in sorted(now.items()):
        place = result.placements.get(key)
        if place is None or place.outcome == Outcome.GPU or key in changed_keys:
            continue
        usage = result.usage(*slot)
        newcomers = [k for k in (usage.keys if usage else ()) if now.get(k) != slot]
        evicted.append(
            {
                **_model_row(by_key[key]),
                "from": str(placement.Slot(*slot)),
                "outcome": str(place.outcome),
                "for": [_model_row(by_key[k]) for k in newcomers],
                "reason": place.reason,
            }
        )
    cpu = [
        {**_model_row(by_key[p.key]), "node": p.node, "reason": p.reason}
        for p in sorted(result.with_outcome(Outcome.CPU), key=lambda p: p.key)
    ]
    moves = [
        {
            **_model_row(by_key[m.key]),
            "from": str(m.source),
            "to": str(m.target),
            "reason": m.reason,
        }
        for m in result.moves
    ]
    return {"gpus": gpu_rows, "evicted": evicted, "cpu": cpu, "moves": moves}


def _own_demands(state: ClusterState, catalog: CatalogSpec) -> dict[str, placement.Demand]:
    """This namespace's selections the operator would plan (by key), as it would plan them."""
    out = {}
    for _, sel in sorted(state.by_task.items()):
        model = sel.spec.model
        option = catalog.option(sel.spec.task, model) if model else None
        if option is None or option.is_external:
            continue
        if budget.memory_limit_refusal(model or "", option, catalog.inference) is not None:
            continue  # the operator fails it: it takes no room
        policy = sel.spec.effective_load_policy(catalog.inference)
        if policy == LoadPolicy.ON_DEMAND and not sel.spec.wanted:
            continue  # waits for /load: no pod, no room
        key = f"{state.namespace}/{sel.name}"
        demand = budget.demand_for(budget.Selected(key, sel.spec, sel.status), option)
        out[key] = dataclasses.replace(demand, current=_holding(sel) or demand.current)
    return out


def _holding(sel: Selection) -> placement.Slot | None:
    """The GPU the operator counts the selection against while it holds one (as it plans)."""
    status, index = sel.status, planned_gpu(sel.status)
    if status.phase in _HOLDING and status.node and index is not None:
        return placement.Slot(status.node, index)
    return None


def _peer_demands(state: ClusterState) -> list[placement.Demand]:
    """What the other namespaces' selections hold now, with their rank and GPU."""
    out = []
    for key, sel in holders(state):
        if key.startswith(f"{state.namespace}/"):
            continue
        status = sel.status
        out.append(
            placement.Demand(
                key=key,
                task=sel.spec.task,
                model=sel.spec.model or "",
                vram_gib=_held_gib(status),
                priority=sel.spec.priority,
                last_used=budget.epoch_seconds(status.last_used),
                device_policy=DevicePolicy(sel.spec.device_policy),
                current=placement.Slot(status.node or "", planned_gpu(status)),
            )
        )
    return out


def _held_gib(status: SelectionStatus) -> float:
    return status.declared_memory_gb or status.measured_memory_gb or 0.0


def _model_before(state: ClusterState, task: str) -> str | None:
    sel: Selection | None = state.selection_for(task)
    return sel.spec.model if sel is not None else None


def _model_row(d: placement.Demand) -> dict[str, Any]:
    return {
        "key": d.key,
        "task": d.task,
        "model": d.model,
        "vram_gb": round_gb(d.vram_gib),
        "priority": d.priority,
    }
