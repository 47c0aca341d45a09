"""The memory budget behind `POST /api/models/validate`, read off the operator's plan.

`validate()` answers the contract's question, "can the selected models fit
in the available VRAM?", from the plan of the planner's input that
`fovea.domain.demand.build` makes: the input the operator plans with every
pass (every visible namespace's selections with their priorities, last use
and current GPUs, each namespace's GPU-memory quota or the cluster default,
the session leases, the nodes' CPU, memory and pod room). So `valid` says
what the operator's next pass does with this namespace's selections, as far
as the API sees the cluster (`fovea.api.planning` says what it cannot see);
`/validate` prefers the operator's own decision where its status is current
(`fovea.api.validation`).

Fields, exactly as the contract documents them:

- `valid`: every selected model that the operator plans and that needs a GPU
  gets one in the plan (neither over its namespace's quota nor evicted nor
  sent to the CPU), and none exceeds `max_memory_per_model`. Models that need
  no GPU (external APIs, device policy `cpu`) do not count against the GPUs;
  a model the operator does not plan now (onDemand and not asked for, or
  unloaded after its keepAlive) counts in the totals but not in `valid`.
- `total_vram_gb`: the memory of all GPUs, summed.
- `total_required_gb`: the VRAM of the selected models that need a GPU.
- `threshold`: the catalog's `offload_threshold`.
- `max_allowed_gb`: threshold * memory, summed over the GPUs. With several
  GPUs this is necessary but not enough: a model must fit on one GPU, which is
  why `valid` comes from the plan, not from comparing these two sums.
- `model_requirements`: `{task: {model_name, vram_gb}}`; `vram_gb` is 0 for
  a model that needs no GPU. `vram_mb` options count in GiB (512 MB = 0.5).
- `warnings`: the contract's sentences first, then one per selection the plan
  cannot put on a GPU:
  "Total required VRAM (20.5 GB) exceeds available VRAM (8.0 GB)", or, when
  it is below the memory but above the threshold, "Total required VRAM
  (18.3 GB) exceeds the threshold limit (16.0 GB, 80% of 20.0 GB)"; then
  "Consider selecting smaller models or reducing simultaneous tasks"
  whenever the budget is not valid; then e.g. "video_summarization:
  llama-4-maverick (16.0 GB) cannot be placed on a GPU: <the plan's reason>";
  then one per model the operator refuses because it declares more than the
  catalog's numeric `max_memory_per_model` ("object_detection: Model 'x'
  needs 40.0 GB, more than max_memory_per_model 24.0 GB; the operator will
  not load it"). Such a model counts in the totals and makes the budget
  invalid, but takes no room in the plan (the operator does not plan it):
  its placement is `unschedulable`, with that sentence as the reason.

Extras (beyond the contract): `sharing_mode`, `gpus` (each GPU's capacity,
use, and what the plan puts there: this namespace's tasks by name, other
selections as "namespace/name") and `placements` (each task's outcome, node, GPU and reason).
Totals are rounded to one decimal like the contract; per-model figures to two
(0.25 stays 0.25). GB means GiB throughout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from fovea.domain.placement import EPSILON, Outcome, Placement, Plan
from fovea.domain.resources import (
    CatalogSpec,
    DevicePolicy,
    InferenceSettings,
    ModelOption,
    SelectionSpec,
    SelectionStatus,
    SharingMode,
)
from fovea.domain.units import format_gb, round_gb

if TYPE_CHECKING:  # demand imports this module (memory_limit_refusal)
    from fovea.domain.demand import PlanInput

CONSIDER = "Consider selecting smaller models or reducing simultaneous tasks"
NOT_PLANNED = (
    "Not loaded, so not planned: it waits for /load or first use (load policy onDemand), "
    "or was unloaded after its keepAlive"
)


class ModelRequirement(BaseModel):
    model_name: str
    vram_gb: float


class GpuBudget(BaseModel):
    node: str
    index: int
    product: str | None
    simulated: bool
    memory_gb: float
    capacity_gb: float
    used_gb: float
    free_gb: float
    tasks: list[str]


class PlacementView(BaseModel):
    model_name: str
    outcome: Outcome
    node: str | None
    gpu_index: int | None
    reason: str


class BudgetReport(BaseModel):
    """The body of POST /api/models/validate: the contract's fields, then extras."""

    valid: bool
    total_vram_gb: float
    total_required_gb: float
    threshold: float
    max_allowed_gb: float
    model_requirements: dict[str, ModelRequirement]
    warnings: list[str]
    sharing_mode: SharingMode
    gpus: list[GpuBudget]
    placements: dict[str, PlacementView]


@dataclass(frozen=True)
class Selected:
    """One ModelSelection, as the budget needs it. `key` is unique ("namespace/name")."""

    key: str
    spec: SelectionSpec
    status: SelectionStatus | None = None


def validate(
    catalog: CatalogSpec,
    selections: Iterable[Selected],
    planned: PlanInput,
    *,
    sharing: SharingMode | str | None = None,
) -> BudgetReport:
    """The budget of the selections' models in the operator's plan (see the module docstring).

    `planned` is the planner's input of the whole visible cluster
    (`fovea.domain.demand.build`); pass one selection per task (the task's
    ModelSelection); a selection with no model counts for nothing. `sharing`
    defaults to the plan's mode.
    """
    threshold = catalog.inference.offload_threshold
    mode = SharingMode(sharing or planned.sharing)
    gpus = planned.gpus
    problems: list[str] = []
    chosen: dict[str, tuple[Selected, ModelOption]] = {}  # by task
    for sel in sorted(selections, key=lambda s: s.key):
        task, model = sel.spec.task, sel.spec.model
        if not model or task in chosen:
            continue
        option = catalog.option(task, model)
        if option is None:
            problems.append(f"{task}: model '{model}' is not in the catalog; it is not counted")
            continue
        chosen[task] = (sel, option)

    result = planned.plan()
    refused = {
        task: why
        for task, (sel, option) in chosen.items()
        if (why := memory_limit_refusal(sel.spec.model or "", option, catalog.inference))
    }
    placed = {
        task: _placement(sel, option, refused.get(task), planned, result)
        for task, (sel, option) in chosen.items()
    }
    required = {
        task: option.vram_gib if _wants_gpu(sel, option) else 0.0
        for task, (sel, option) in chosen.items()
    }
    total_vram = sum(g.memory_gib for g in gpus)
    total_required = sum(required.values())
    max_allowed = threshold * total_vram
    missing = [
        task
        for task, (sel, option) in chosen.items()
        if _wants_gpu(sel, option)
        and placed[task].outcome != Outcome.GPU
        and task not in refused
        and (sel.key in result.placements or sel.key in planned.refused)
    ]
    valid = not missing and not refused

    warnings: list[str] = []
    if total_required > total_vram + EPSILON:
        warnings.append(
            f"Total required VRAM ({format_gb(total_required)} GB) exceeds available VRAM "
            f"({format_gb(total_vram)} GB)"
        )
    elif total_required > max_allowed + EPSILON:
        warnings.append(
            f"Total required VRAM ({format_gb(total_required)} GB) exceeds the threshold limit "
            f"({format_gb(max_allowed)} GB, {threshold:.0%} of {format_gb(total_vram)} GB)"
        )
    if not valid:
        warnings.append(CONSIDER)
    warnings.extend(
        _placement_warning(task, chosen[task][0].spec.model or "", chosen[task][1], placed[task])
        for task in missing
    )
    warnings.extend(
        f"{task}: {why}; the operator will not load it" for task, why in refused.items()
    )
    warnings.extend(problems)

    task_of = {sel.key: task for task, (sel, _) in chosen.items()}
    return BudgetReport(
        valid=valid,
        total_vram_gb=round_gb(total_vram),
        total_required_gb=round_gb(total_required),
        threshold=threshold,
        max_allowed_gb=round_gb(max_allowed),
        model_requirements={
            task: ModelRequirement(
                model_name=sel.spec.model or "", vram_gb=round_gb(required[task])
            )
            for task, (sel, _) in chosen.items()
        },
        warnings=warnings,
        sharing_mode=mode,
        gpus=[
            GpuBudget(
                node=g.node,
                index=g.index,
                product=g.product,
                simulated=g.simulated,
                memory_gb=round_gb(g.memory_gib),
                capacity_gb=round_gb(g.capacity_gib),
                used_gb=round_gb(g.used_gib),
                free_gb=round_gb(g.free_gib),
                tasks=[task_of.get(k, k) for k in g.keys],
            )
            for g in result.gpus
        ],
        placements={
            task: PlacementView(
                model_name=chosen[task][0].spec.model or "",
                outcome=p.outcome,
                node=p.node,
                gpu_index=p.gpu_index,
                reason=p.reason,
            )
            for task, p in placed.items()
        },
    )


def _wants_gpu(sel: Selected, option: ModelOption) -> bool:
    return not option.is_external and DevicePolicy(sel.spec.device_policy) != DevicePolicy.CPU


def _placement(
    sel: Selected, option: ModelOption, refused: str | None, planned: PlanInput, result: Plan
) -> Placement:
    """The plan's outcome for one selection, or why the operator does not plan it."""
    if refused is not None:  # over max_memory_per_model: the operator fails it
        return Placement(sel.key, Outcome.UNSCHEDULABLE, refused)
    over_quota = planned.refused.get(sel.key)
    if over_quota is not None:
        return Placement(sel.key, Outcome.UNSCHEDULABLE, over_quota)
    place = result.placements.get(sel.key)
    if place is not None:
        return place
    if option.is_external:
        return Placement(sel.key, Outcome.EXTERNAL, "An external API: no pod, no GPU")
    return Placement(sel.key, Outcome.UNSCHEDULABLE, NOT_PLANNED)


def memory_limit_refusal(
    model: str, option: ModelOption, inference: InferenceSettings
) -> str | None:
    """Why `model` may not load under the catalog's `max_memory_per_model`; None when it may.

    A numeric limit caps the VRAM an option declares; `auto` leaves the GPUs
    as the only limit. The operator fails such a selection with this message.
    """
    limit = inference.memory_limit_gib
    if limit is None or option.vram_gib <= limit + EPSILON:
        return None
    return (
        f"Model '{model}' needs {format_gb(option.vram_gib)} GB, "
        f"more than max_memory_per_model {format_gb(limit)} GB"
    )


def epoch_seconds(stamp: str | None) -> float:
    """An RFC 3339 time as epoch seconds; 0 (never) when missing or malformed."""
    if not stamp:
        return 0.0
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return parsed.timestamp() if parsed.tzinfo else 0.0


def _placement_warning(task: str, model: str, option: ModelOption, p: Placement) -> str:
    head = f"{task}: {model} ({format_gb(option.vram_gib)} GB)"
    if p.outcome == Outcome.CPU:
        return f"{head} would run on the CPU: {p.reason}"
    if p.outcome == Outcome.EVICTED:
        return f"{head} would be evicted: {p.reason}"
    return f"{head} cannot be placed on a GPU: {p.reason}"
