"""The GPU board's data: `GET /api/models/board`, one body for the page at `/`.

Pure: built from the cache's snapshot (a ClusterState and its GPUs).

- `gpus`: one entry per GPU: `node`, `index`, `product`, `simulated`,
  `memory_gb`, `threshold_gb` (the line: `offload_threshold * memory`) and
  `models`: every selection the operator placed there (this namespace's and,
  cluster-wide, the others'), each with its `declared_gb` (the catalog's
  figure), `planned` (the operator counts it against this GPU) and
  `measured_gb` (what its pod measured; null until then).
- `tasks`: every task of the catalog: its `options` (name and declared GB),
  the `selected` model, `phase`, `device`, `node`/`gpu_index`, `degraded`
  (on the CPU for want of GPU memory: the reason), `message` and the load
  `progress` (the pod's state, its reason, a percentage when it gives one),
  and its `endpoint` (`route`, `service`, `serving_model`; null until the
  operator names it). The request rate and queue are not here: the page
  polls `GET /api/models/inference` for them.
- `threshold`, `simulated`, `namespace`, `cluster_wide`.
"""

from __future__ import annotations

import re
from typing import Any

from fovea.api.responses import GpuView, holders, planned_gpu
from fovea.api.state import ClusterState, Selection
from fovea.domain import degraded
from fovea.domain.conditions import RuntimeState, WeightsPhase
from fovea.domain.resources import CatalogSpec, Phase
from fovea.domain.units import format_bytes, round_gb

_SELECTION_FIELDS = (
    "selected",
    "wanted",
    "phase",
    "device",
    "node",
    "gpu_index",
    "message",
    "degraded",
    "declared_gb",
    "measured_gb",
    "progress",
    "endpoint",
)
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")


def board_body(state: ClusterState, gpus: GpuView) -> dict[str, Any]:
    """The board for `state` (see the module docstring)."""
    catalog = state.catalog or CatalogSpec()
    threshold = catalog.inference.offload_threshold
    held = holders(state)
    own_prefix = f"{state.namespace}/"
    return {
        "namespace": state.namespace,
        "cluster_wide": state.cluster_wide,
        "threshold": threshold,
        "simulated": gpus.simulated,
        "catalog_error": state.catalog_error,
        "gpus": [
            {
                "node": g.node,
                "index": g.index,
                "product": g.product,
                "simulated": g.simulated,
                "memory_gb": round_gb(g.memory_gib),
                "threshold_gb": round_gb(g.memory_gib * threshold),
                "models": [
                    _model_on_gpu(key, sel, own=key.startswith(own_prefix))
                    for key, sel in held
                    if (sel.status.node, planned_gpu(sel.status)) == (g.node, g.index)
                ],
            }
            for g in gpus.gpus
        ],
        "tasks": [_task(catalog, state, task) for task in catalog.tasks],
    }


def _model_on_gpu(key: str, sel: Selection, own: bool) -> dict[str, Any]:
    status = sel.status
    return {
        "key": key,
        "own": own,
        "task": sel.spec.task,
        "model": status.model or sel.spec.model,
        "phase": str(status.phase),
        "declared_gb": status.declared_memory_gb,
        "planned": status.planned_gpu_index is not None,
        "measured_gb": _measured(sel),
    }


def _task(catalog: CatalogSpec, state: ClusterState, task: str) -> dict[str, Any]:
    sel = state.selection_for(task)
    options = [
        {"name": name, "declared_gb": round_gb(opt.vram_gib), "external": opt.is_external}
        for name, opt in catalog.tasks[task].options.items()
    ]
    if sel is None:
        return {"task": task, "options": options, **dict.fromkeys(_SELECTION_FIELDS)}
    status = sel.status
    phase = Phase(status.phase)
    return {
        "task": task,
        "options": options,
        "selected": sel.spec.model,
        "wanted": sel.spec.wanted,
        "phase": str(phase),
        "device": status.device,
        "node": status.node,
        "gpu_index": planned_gpu(status),
        "message": status.message,
        "degraded": degraded.message(status.conditions)
        or (status.message if phase == Phase.CPU_FALLBACK else None),
        "declared_gb": status.declared_memory_gb,
        "measured_gb": _measured(sel),
        "progress": _progress(sel),
        "endpoint": _endpoint(sel),
    }


def _endpoint(sel: Selection) -> dict[str, Any] | None:
    """Where the task's requests go (docs/inference.md): the route, and who serves now."""
    endpoint = sel.status.endpoint
    if endpoint is None:
        return None
    return {
        "route": endpoint.route,
        "service": endpoint.service,
        "serving_model": endpoint.serving_model,
    }


def _measured(sel: Selection) -> float | None:
    runtime = sel.status.runtime
    if runtime is not None and runtime.measured_memory_gb is not None:
        return runtime.measured_memory_gb
    return sel.status.measured_memory_gb


def _progress(sel: Selection) -> dict[str, Any] | None:
    """The pod's own report of its load: state, reason, and a percentage when it says one.

    Only the current pod's: while a new model loads, the previous pod still reports.
    """
    runtime = sel.status.runtime
    if runtime is None or (runtime.pod and sel.status.pod and runtime.pod != sel.status.pod):
        return None  # none yet, or the previous pod's
    weights = sel.status.weights
    if weights is not None and weights.phase == WeightsPhase.FETCHING:  # docs/weights.md
        total = weights.bytes_total
        done = format_bytes(weights.bytes_done) + (f" of {format_bytes(total)}" if total else "")
        return {
            "state": str(WeightsPhase.FETCHING),
            "reason": f"fetching weights: {done}",
            "percent": min(100.0, 100.0 * weights.bytes_done / total) if total else None,
        }
    found = _PERCENT.search(runtime.reason or "")
    return {
        "state": str(runtime.state or RuntimeState.LOADING),
        "reason": runtime.reason,
        "percent": min(100.0, float(found.group(1))) if found else None,
    }
