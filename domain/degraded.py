"""A fallback that comes back: `Degraded` on a model on the CPU for want of GPU memory.

A selection whose model the planner sent to the CPU because no GPU had room
(outcome `cpu`, device policy `auto`) carries `Degraded=True`, reason
`CPUFallback`, with the planner's reason and the GPU it wants: the smallest
GPU whose capacity (`offload_threshold` x memory) could hold it once memory
frees there. The planner re-plans at every pass; as soon as a GPU has room the
model is placed there again and the operator rolls it make-before-break (the
new GPU pod loads while the CPU pod still serves; the CPU pod goes once the
new one is Ready). Then `Degraded` turns False, reason `Placed`. A selection
that never fell back has no `Degraded` condition at all.

Pure: conditions as values; the operator writes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fovea.domain.conditions import ConditionType, ConditionValue, Reason
from fovea.domain.placement import EPSILON, GpuUsage
from fovea.domain.resources import Condition
from fovea.domain.units import format_gb


def wanted_gpu(gpus: Sequence[GpuUsage], vram_gib: float) -> GpuUsage | None:
    """The smallest GPU of the plan that could hold `vram_gib` below its threshold, empty."""
    fitting = [g for g in gpus if vram_gib <= g.capacity_gib + EPSILON]
    return min(fitting, key=lambda g: (g.memory_gib, g.node, g.index), default=None)


def fallback(reason: str, wanted: GpuUsage | None, vram_gib: float) -> ConditionValue:
    """Degraded=True: on the CPU for want of GPU memory, why, and the GPU it wants."""
    wants = (
        f"wants {wanted.node} GPU {wanted.index} ({format_gb(vram_gib)} GB) once memory frees"
        if wanted is not None
        else f"no GPU could hold {format_gb(vram_gib)} GB"
    )
    return ConditionValue.of(
        ConditionType.DEGRADED, True, Reason.CPU_FALLBACK, f"on the CPU: {reason}; {wants}"
    )


def after(
    previous: Sequence[dict[str, object]], now: ConditionValue | None
) -> list[ConditionValue]:
    """The Degraded condition to write: `now` if degraded; False once it was, else none."""
    if now is not None:
        return [now]
    was = any(c.get("type") == ConditionType.DEGRADED.value for c in previous)
    if not was:
        return []
    return [
        ConditionValue.of(ConditionType.DEGRADED, False, Reason.PLACED, "not on the CPU fallback")
    ]


def message(conditions: Sequence[Condition]) -> str | None:
    """The Degraded condition's message while it is True (what /status and the board show)."""
    for cond in conditions:
        if cond.type == ConditionType.DEGRADED.value and cond.status == "True":
            return cond.message
    return None
