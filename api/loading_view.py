"""Pure: the `loading` section of `/api/models/status`, and the weights part of SSE events.

A model that is not yet Ready is `fetching` (its pod's fetch-weights container fills
the cache: bytes done and total, rate) or `loading` (its model container loads it).
Additive to the contract: `loaded_models` and every other field stay as they are.
"""

from __future__ import annotations

from typing import Any

from fovea.api.state import ClusterState, Selection
from fovea.domain.conditions import ConditionType, WeightsPhase
from fovea.domain.resources import Phase, WeightsReport

FETCHING = "fetching"
LOADING = "loading"


def loading_section(state: ClusterState) -> dict[str, dict[str, Any]]:
    """Per task, the model on its way to Ready (phase Loading): what it is doing, how far."""
    out: dict[str, dict[str, Any]] = {}
    for task in sorted(state.by_task):
        body = loading_entry(state.by_task[task])
        if body is not None:
            out[task] = body
    return out


def loading_entry(sel: Selection) -> dict[str, Any] | None:
    """One task's entry, or None when its model is not loading (Ready, failed, unplaced)."""
    status = sel.status
    if status.phase != Phase.LOADING:
        return None
    weights = status.weights
    fetching = weights is not None and weights.phase == WeightsPhase.FETCHING
    runtime = status.runtime
    since = next(
        (c.last_transition_time for c in status.conditions if c.type == ConditionType.READY),
        None,
    )
    return {
        "task": sel.spec.task,
        "model": sel.spec.model,
        "model_id": status.model_id,
        "phase": FETCHING if fetching else LOADING,
        "bytes_done": weights.bytes_done if fetching and weights else None,
        "bytes_total": weights.bytes_total if fetching and weights else None,
        "bytes_per_second": weights.bytes_per_second if fetching and weights else None,
        "weights": weights_data(weights),
        "message": (runtime.reason if runtime and not fetching else None) or status.message,
        "pod": status.pod,
        "node": status.node,
        "since": since,
    }


def weights_data(weights: WeightsReport | None) -> dict[str, Any] | None:
    """status.weights in the API's snake_case (None: the option has no `weights:`)."""
    if weights is None:
        return None
    return {
        "phase": str(weights.phase),
        "source": weights.source,
        "revision": weights.revision,
        "sha256": weights.sha256,
        "bytes_done": weights.bytes_done,
        "bytes_total": weights.bytes_total,
        "bytes_per_second": weights.bytes_per_second,
        "fetched_bytes": weights.fetched_bytes,
        "message": weights.message,
        "updated_at": weights.updated_at,
    }
