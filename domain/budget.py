"""The memory budget behind `POST /api/models/validate`, from the operator's own plan.

`validate()` answers the contract's question, "can the selected models fit
in the available VRAM?", by running `placement.plan()` on the selections as
the operator would (same GPUs, threshold, priorities, last use, current
placements). So `valid` means the operator can really place them.

Fields, exactly as the contract documents them:

- `valid`: every selected model that needs a GPU gets one, without evicting
  anything, and none exceeds `max_memory_per_model`. Models that need no GPU
  (external APIs, device policy `cpu`) do not count against the GPUs.
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
use and tasks) and `placements` (each task's outcome, node, GPU and reason).
Totals are rounded to one decimal like the contract; per-model figures to two
(0.25 stays 0.25). GB means GiB throughout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from fovea.domain.gpus import Gpu
from fovea.domain.placement import EPSILON, Demand, Outcome, Placement, Slot, plan
from fovea.domain.resources import (
    CatalogSpec,
    DevicePolicy,
    InferenceSettings,
    ModelOption,
    Phase,
    SelectionSpec,
    SelectionStatus,
    SharingMode,
)
from fovea.domain.units import format_gb, round_gb

CONSIDER = "Consider selecting smaller models or reducing simultaneous tasks"
# Phases whose status.node/gpuIndex describe a model that holds (or is taking) its GPU.
_HOLDING = {Phase.SCHEDULING, Phase.LOADING, Phase.READY}


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
    gpus: Sequence[Gpu],
    *,
    sharing: SharingMode | str | None = None,
) -> BudgetReport:
    """The budget of the selections' models on these GPUs (see the module docstring).

    Pass one selection per task (the task's ModelSelection); a selection with
    no model counts for nothing. `sharing` defaults to the catalog's mode.
    """
    threshold = catalog.inference.offload_threshold
    mode = SharingMode(sharing or catalog.sharing_mode)
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

    demands = {task: demand_for(sel, option) for task, (sel, option) in chosen.items()}
    refused = {
        task: why
        for task, (sel, option) in chosen.items()
        if (why := memory_limit_refusal(sel.spec.model or "", option, catalog.inference))
    }
    planned = [d for task, d in demands.items() if task not in refused]
    result = plan(gpus, planned, threshold=threshold, sharing=mode)
    placed = {
        task: Placement(d.key, Outcome.UNSCHEDULABLE, refused[task])
        if task in refused
        else result.placements[d.key]
        for task, d in demands.items()
    }

    required = {task: d.vram_gib if d.wants_gpu else 0.0 for task, d in demands.items()}
    total_vram = sum(g.memory_gib for g in gpus)
    total_required = sum(required.values())
    max_allowed = threshold * total_vram
    missing = [
        task
        for task, d in demands.items()
        if d.wants_gpu and placed[task].outcome != Outcome.GPU and task not in refused
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
    warnings.extend(_placement_warning(task, demands[task], placed[task]) for task in missing)
    warnings.extend(
        f"{task}: {why}; the operator will not load it" for task, why in refused.items()
    )
    warnings.extend(problems)

    task_of = {d.key: task for task, d in demands.items()}
    return BudgetReport(
        valid=valid,
        total_vram_gb=round_gb(total_vram),
        total_required_gb=round_gb(total_required),
        threshold=threshold,
        max_allowed_gb=round_gb(max_allowed),
        model_requirements={
            task: ModelRequirement(model_name=demands[task].model, vram_gb=round_gb(required[task]))
            for task in demands
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
                tasks=[task_of[k] for k in g.keys],
            )
            for g in result.gpus
        ],
        placements={
            task: PlacementView(
                model_name=demands[task].model,
                outcome=p.outcome,
                node=p.node,
                gpu_index=p.gpu_index,
                reason=p.reason,
            )
            for task, p in placed.items()
        },
    )


def demand_for(sel: Selected, option: ModelOption) -> Demand:
    """The planner's view of one selection (what the operator plans with, too).

    Its current slot is the node and GPU in its status while it holds a GPU;
    its last use is the later of the operator's and the model pod's report.
    """
    status = sel.status or SelectionStatus()
    current = None
    if status.phase in _HOLDING and status.node and status.gpu_index is not None:
        current = Slot(status.node, status.gpu_index)
    runtime_used = status.runtime.last_used if status.runtime else None
    return Demand(
        key=sel.key,
        task=sel.spec.task,
        model=sel.spec.model or "",
        vram_gib=option.vram_gib,
        priority=sel.spec.priority,
        last_used=max(epoch_seconds(status.last_used), epoch_seconds(runtime_used)),
        device_policy=DevicePolicy(sel.spec.device_policy),
        cpu_memory_gib=option.cpu_memory_gb,
        current=current,
        external=option.is_external,
        was_evicted=status.phase == Phase.EVICTED,
    )


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


def _placement_warning(task: str, d: Demand, p: Placement) -> str:
    head = f"{task}: {d.model} ({format_gb(d.vram_gib)} GB)"
    if p.outcome == Outcome.CPU:
        return f"{head} would run on the CPU: {p.reason}"
    if p.outcome == Outcome.EVICTED:
        return f"{head} would be evicted: {p.reason}"
    return f"{head} cannot be placed on a GPU: {p.reason}"
