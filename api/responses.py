"""Pure builders of the contract's response bodies from a ClusterState.

No I/O: the cache calls these after every change and keeps the JSON bytes,
so each GET is a dictionary lookup. Unit tests call them directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fovea.api.state import ClusterState, Selection
from fovea.domain import budget
from fovea.domain.gpus import Gpu, gpus_from_nodes
from fovea.domain.resources import CatalogSpec, InferenceSettings, ModelOption, RuntimeReport

# The option fields of the original models.yaml, served back as the catalog has them.
ORIGINAL_OPTION_FIELDS = frozenset(
    {
        "model_id",
        "framework",
        "vram_gb",
        "vram_mb",
        "speed",
        "description",
        "fps",
        "quantization",
        "provider",
        "api_endpoint",
        "requires_api_key",
    }
)
DIGITS = 6  # KiB precision (tiny models count); avoids 8.299999999 from float sums


@dataclass(frozen=True)
class GpuView:
    """The GPUs of the cluster, as the responses describe them."""

    gpus: tuple[Gpu, ...]
    simulated: bool

    @property
    def total_gib(self) -> float:
        return round(sum(g.memory_gib for g in self.gpus), DIGITS)

    @property
    def available(self) -> bool:
        return bool(self.gpus)


@dataclass(frozen=True)
class LoadedModel:
    task: str
    selection: Selection
    runtime: RuntimeReport
    gpu_device: str | None  # "cuda:N" when it occupies a (real or simulated) GPU

    @property
    def memory_gib(self) -> float:
        measured = self.runtime.measured_memory_gb
        if measured is None:
            measured = self.selection.status.measured_memory_gb
        return float(measured or 0.0)


def gpu_view(state: ClusterState) -> GpuView:
    """GPUs from the Nodes (feature-discovery labels) and the catalog's overrides."""
    overrides = state.catalog.gpu_overrides if state.catalog else []
    gpus = tuple(gpus_from_nodes(state.nodes, overrides))
    return GpuView(gpus=gpus, simulated=any(g.simulated for g in gpus))


def config_body(state: ClusterState, gpus: GpuView) -> dict[str, Any]:
    """GET /api/models/config: every task of the catalog, its options and selection."""
    models: dict[str, Any] = {}
    inference = state.catalog.inference if state.catalog else InferenceSettings()
    if state.catalog is not None:
        for task, spec in state.catalog.tasks.items():
            sel = state.selection_for(task)
            models[task] = {
                "selected": sel.spec.model if sel is not None and sel.spec.model else None,
                "options": {name: option_body(opt) for name, opt in spec.options.items()},
            }
    return {
        "models": models,
        "inference": inference.model_dump(mode="json", by_alias=False),
        "cuda_available": gpus.available,
        "total_vram_gb": gpus.total_gib,
        "simulated_gpu": gpus.simulated,
    }


def option_body(option: ModelOption) -> dict[str, Any]:
    """An option with the original snake_case fields, only those the catalog sets."""
    return option.model_dump(
        mode="json", by_alias=False, exclude_unset=True, include=set(ORIGINAL_OPTION_FIELDS)
    )


def loaded_models(state: ClusterState) -> list[LoadedModel]:
    """Selections whose model pod reports Ready, and whose pod still exists."""
    out = []
    for task in sorted(state.by_task):
        sel = state.by_task[task]
        runtime = sel.status.runtime
        if runtime is None or runtime.state != "Ready":
            continue
        pod = runtime.pod or sel.status.pod
        if pod is not None and pod not in state.live_pods:
            continue  # a report left behind by a pod that is gone
        out.append(LoadedModel(task, sel, runtime, _gpu_device(sel, runtime)))
    return out


def status_body(state: ClusterState, gpus: GpuView) -> dict[str, Any]:
    """GET /api/models/status: what the model pods report, summed over GPUs."""
    loaded = loaded_models(state)
    on_gpu = [m for m in loaded if m.gpu_device is not None]
    return {
        "loaded_models": {
            m.task: {
                "model_id": m.runtime.model_id or m.selection.status.model_id or "",
                "memory_usage_gb": round(m.memory_gib, DIGITS),
                "load_time": round(
                    float(
                        m.runtime.load_time_seconds or m.selection.status.load_time_seconds or 0.0
                    ),
                    DIGITS,
                ),
                "device": m.runtime.device or m.selection.status.device or "cpu",
                "node": m.selection.status.node,
                "pod": m.runtime.pod or m.selection.status.pod,
                "simulated_gpu": m.runtime.simulated_gpu,
                "random_weights": m.runtime.random_weights,
            }
            for m in loaded
        },
        "total_vram_allocated_gb": round(sum(m.memory_gib for m in on_gpu), DIGITS),
        "total_vram_available_gb": gpus.total_gib,
        "cuda_available": gpus.available,
        "device": on_gpu[0].gpu_device if on_gpu else "cpu",
        "simulated_gpu": gpus.simulated,
    }


def vram_by_gpu(state: ClusterState, loaded: Sequence[LoadedModel]) -> dict[tuple[str, int], float]:
    """Measured memory of loaded models per (node, GPU index), for the metrics."""
    out: dict[tuple[str, int], float] = {}
    for m in loaded:
        status = m.selection.status
        if m.gpu_device is None or status.node is None:
            continue
        key = (status.node, status.gpu_index or 0)
        out[key] = out.get(key, 0.0) + m.memory_gib
    return out


def to_json(body: Any) -> bytes:
    """Compact JSON bytes, as served."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _gpu_device(sel: Selection, runtime: RuntimeReport) -> str | None:
    device = runtime.device or ""
    if device.startswith("cuda"):
        return device
    # On a simulated GPU the process runs on the CPU but holds the GPU's share of VRAM.
    if runtime.simulated_gpu or sel.status.gpu_index is not None:
        return sel.status.device if (sel.status.device or "").startswith("cuda") else "cuda:0"
    return None


def validate_body(state: ClusterState, gpus: GpuView) -> dict[str, Any]:
    """POST /api/models/validate: the operator's planner run on the current selections.

    One selection per task (the one `/config` reports); without a catalog
    there is nothing selected and the budget is trivially valid.
    """
    catalog = state.catalog or CatalogSpec()
    selected = [
        budget.Selected(key=f"{state.namespace}/{sel.name}", spec=sel.spec, status=sel.status)
        for _, sel in sorted(state.by_task.items())
    ]
    report = budget.validate(catalog, selected, gpus.gpus)
    return report.model_dump(mode="json")
