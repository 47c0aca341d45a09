"""What-if validation: `/validate` as if some tasks selected other models, plus the plan.

`POST /api/models/validate?task_type=T&model_name=M` (repeatable, in pairs; the
camelCase spellings `taskType`/`modelName` too) answers the contract's body for
the selections as they would be after the change, and a `plan`:

- `gpus`: per GPU, which models it would hold (key, task, model, GB);
- `evicted`: models that hold a GPU now and would lose it, for whom (the
  models the plan puts on that GPU that are not there now) and why;
- `cpu`: models that would run on the CPU instead of a GPU, and why;
- `moves`: running models the plan would put on another GPU.

The plan is the operator's: the planner's input built as the operator builds
it (`fovea.domain.demand` through `fovea.api.planning`: every visible
namespace's selections, with this namespace's after the change, their model
pods, the other pods on the nodes, the quotas with the cluster default and the
live session leases), planned by `fovea.domain.placement.plan()`. Nothing is
written; everything but `what_if_json` is pure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fovea.api import inspect, planning
from fovea.api.errors import BadRequest
from fovea.api.responses import holders, planned_gpu, to_json
from fovea.api.service import ModelService
from fovea.api.state import ClusterState, Selection
from fovea.api.validation import validate_body
from fovea.domain import demand
from fovea.domain.demand import Outcome
from fovea.domain.units import round_gb


def what_if_json(service: ModelService, tasks: Sequence[str], models: Sequence[str]) -> bytes:
    """The what-if body on the current snapshot; the errors of /validate and /select."""
    changes = pairs(tasks, models)
    snap = service.readable_snapshot()
    if snap.state.catalog is None:
        service.validate_json()  # raises CatalogUnreadable with the reason
    return to_json(what_if_body(snap.state, changes, time.time()))


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


def what_if_body(state: ClusterState, changes: Mapping[str, str], now: float) -> dict[str, Any]:
    """The /validate body for `state` with `changes` applied, plus `what_if` and `plan`.

    InvalidTaskType or ModelNotFound when a task or model is not in the catalog.
    A task that already selects the model keeps its status (and its GPU). `now`
    (epoch seconds) decides which session leases are live.
    """
    changed = {
        task: model
        for task, model in changes.items()
        if (sel := state.selection_for(task)) is None or sel.spec.model != model
    }
    inspect.with_selections(state, dict(changes))  # refuses unknown tasks and models
    after = _same_objects(state, inspect.with_selections(state, changed))
    planned = planning.plan_input(after, now)  # one input, one plan, for both parts
    body = validate_body(after, now, planned)
    body["what_if"] = dict(changes)
    body["plan"] = plan_view(state, after, now, planned)
    return body


def _same_objects(before: ClusterState, after: ClusterState) -> ClusterState:
    """`after`'s changed selections are the same objects as before: their uid (whose pods
    are theirs) and namespace stay; so does the stored status the operator reads, with the
    generation the change bumps, so it is not taken for the operator's decision."""
    selections = {}
    for name, sel in after.selections.items():
        old = before.selections.get(name)
        if old is not None and sel is not old:
            sel = dataclasses.replace(sel, namespace=old.namespace, uid=old.uid, status=old.status)
        selections[name] = sel
    by_task = {task: selections[sel.name] for task, sel in after.by_task.items()}
    return dataclasses.replace(after, selections=selections, by_task=by_task)


def plan_view(
    before: ClusterState,
    after: ClusterState,
    now: float,
    planned: demand.PlanInput | None = None,
) -> dict[str, Any]:
    """The operator's plan for `after`, told against what holds the GPUs in `before`."""
    planned = planning.plan_input(after, now) if planned is None else planned
    result = planned.plan()
    by_key = {d.key: d for d in planned.demands}
    own = {d.key: d for d in planned.demands if d.key.startswith(f"{after.namespace}/")}
    now_held = {
        key: (sel.status.node or "", planned_gpu(sel.status)) for key, sel in holders(before)
    }
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
    for key, slot in sorted(now_held.items()):
        place = result.placements.get(key)
        if place is None or place.outcome == Outcome.GPU or key in changed_keys:
            continue
        usage = result.usage(*slot)
        newcomers = [k for k in (usage.keys if usage else ()) if now_held.get(k) != slot]
        evicted.append(
            {
                **_model_row(by_key[key]),
                "from": str(demand.Slot(*slot)),
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


def _model_before(state: ClusterState, task: str) -> str | None:
    sel: Selection | None = state.selection_for(task)
    return sel.spec.model if sel is not None else None


def _model_row(d: demand.Demand) -> dict[str, Any]:
    return {
        "key": d.key,
        "task": d.task,
        "model": d.model,
        "vram_gb": round_gb(d.vram_gib),
        "priority": d.priority,
    }
