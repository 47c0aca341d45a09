"""This namespace's GPU-memory quota, as /validate, /status and the metrics show it.

The quota is the platform team's annotation on the API's own Namespace
(`fovea.dev/gpu-memory-quota`, `fovea.dev/max-priority`; docs/tenants.md).
Its use is what the operator decided: the declared memory of this namespace's
selections it placed on a GPU, and the tasks it refused for the quota
(their `Scheduled` condition's reason is `QuotaExceeded`). Without
annotations the operator's cluster default applies
(`FOVEA_OPERATOR_DEFAULT_GPU_MEMORY_QUOTA`, a setting the API reads too).
"""

from __future__ import annotations

from typing import Any

from fovea.api.state import ClusterState, Selection
from fovea.domain.conditions import ConditionType, Reason
from fovea.domain.resources import Phase
from fovea.domain.units import round_gb

HOLDING = frozenset({Phase.SCHEDULING, Phase.LOADING, Phase.READY})


def quota_view(state: ClusterState) -> dict[str, Any] | None:
    """The quota body, or None when the namespace has no quota (nor a cluster default)."""
    quota = state.quota
    if not quota.limited:
        return None
    used = sum(
        sel.status.declared_memory_gb or 0.0
        for sel in state.selections.values()
        if Phase(sel.status.phase) in HOLDING and _on_gpu(sel)
    )
    exceeded = sorted(
        sel.spec.task
        for sel in state.selections.values()
        if any(
            cond.type == ConditionType.SCHEDULED and cond.reason == Reason.QUOTA_EXCEEDED
            for cond in sel.status.conditions
        )
    )
    limit = quota.gpu_memory_gib
    return {
        "namespace": state.namespace,
        "gpu_memory_quota_gb": None if limit is None else round_gb(limit),
        "max_priority": quota.max_priority,
        "used_gb": round_gb(used),
        "available_gb": None if limit is None else round_gb(max(0.0, limit - used)),
        "quota_exceeded": exceeded,
        "problem": quota.problem,
    }


def _on_gpu(sel: Selection) -> bool:
    """Placed on a GPU by the operator (a simulated GPU's model still counts: it was placed)."""
    status = sel.status
    return bool(status.node) and (
        status.planned_gpu_index is not None or status.gpu_index is not None
    )
