"""Pure builders of the contract's response bodies from a ClusterState.

No I/O: the cache calls these after every change and keeps the JSON bytes,
so each GET is a dictionary lookup. Unit tests call them directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fovea.api.loading_view import loading_section
from fovea.api.quota_view import quota_view
from fovea.api.state import ClusterState, Selection
from fovea.domain import degraded
from fovea.domain.conditions import RuntimeState
from fovea.domain.gpus import Gpu, gpus_from_nodes
from fovea.domain.resources import (
    InferenceSettings,
    ModelOption,
    Phase,
    RuntimeReport,
    SelectionStatus,
)
from fovea.domain.units import round_gb

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
# Phases in which the status's node and GPU index name a GPU the model holds or is taking.
HOLDING = frozenset({Phase.SCHEDULING, Phase.LOADING, Phase.READY, Phase.FAILED})
SECONDS_DIGITS = 3


@dataclass(frozen=True)
class GpuView:
    """The GPUs of the cluster, as the responses describe them."""

    gpus: tuple[Gpu, ...]
    simulated: bool

    @property
    def total_gib(self) -> float:
        return round_gb(sum(g.memory_gib for g in self.gpus))

    @property
    def simulated_gib(self) -> float:
        return round_gb(sum(g.memory_gib for g in self.gpus if g.simulated))

    @property
    def real(self) -> bool:
        """Whether any GPU is real: what `cuda_available` means (a simulated one runs on CPU)."""
        return any(not g.simulated for g in self.gpus)

    def is_simulated(self, node: str | None) -> bool:
        """Whether the GPUs of `node` are simulated."""
        return any(g.simulated for g in self.gpus if g.node == node)


@dataclass(frozen=True)
class LoadedModel:
    task: str
    selection: Selection
    runtime: RuntimeReport
    gpu_device: str | None  # "cuda:N" when it occupies a (real or simulated) GPU

    @property
    def memory_gib(self) -> float | None:
        """What the model pod measured; None when it has not (never a made-up 0.0)."""
        measured = self.runtime.measured_memory_gb
        if measured is None:
            measured = self.selection.status.measured_memory_gb
        return None if measured is None else float(measured)

    @property
    def load_time_s(self) -> float | None:
        seconds = self.runtime.load_time_seconds
        if seconds is None:
            seconds = self.selection.status.load_time_seconds
        return None if seconds is None else float(seconds)


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
        "cuda_available": gpus.real,
        "total_vram_gb": gpus.total_gib,
        "simulated_gpu": gpus.simulated,
        "simulated_vram_gb": gpus.simulated_gib,
    }


def option_body(option: ModelOption) -> dict[str, Any]:
    """An option with the original snake_case fields, only those the catalog sets, as written.

    Numbers come back as the catalog has them: `vram_mb: 512`, not the 512.0 a float
    field holds (Kubernetes keeps no trailing ".0": a whole number was written whole).
    """
    body = option.model_dump(
        mode="json", by_alias=False, exclude_unset=True, include=set(ORIGINAL_OPTION_FIELDS)
    )
    return {
        key: int(value) if isinstance(value, float) and value.is_integer() else value
        for key, value in body.items()
    }


def loaded_models(state: ClusterState) -> list[LoadedModel]:
    """Selections whose model pod reports Ready, and whose pod still exists."""
    out = []
    for task in sorted(state.by_task):
        sel = state.by_task[task]
        runtime = sel.status.runtime
        if runtime is None or runtime.state != RuntimeState.READY:
            continue
        pod = runtime.pod or sel.status.pod
        if pod is not None and pod not in state.live_pods:
            continue  # a report left behind by a pod that is gone
        out.append(LoadedModel(task, sel, runtime, _gpu_device(sel, runtime)))
    return out


def status_body(state: ClusterState, gpus: GpuView) -> dict[str, Any]:
    """GET /api/models/status: what the model pods report, summed over GPUs.

    The top-level `cuda_available` and `device` are true of the real device:
    a model on a simulated GPU runs on the CPU, so it never makes them CUDA.
    `gpus` lists the GPUs the totals cover, with what every namespace holds
    on each (as far as this API can see: `vram_scope`).
    """
    loaded = loaded_models(state)
    on_gpu = [m for m in loaded if m.gpu_device is not None]
    real = [m for m in on_gpu if _real_cuda(m, gpus)]
    return {
        "loaded_models": {
            m.task: {
                "model_id": m.runtime.model_id or m.selection.status.model_id or "",
                "memory_usage_gb": _gb(m.memory_gib),
                "load_time": _seconds(m.load_time_s),
                "device": m.runtime.device or m.selection.status.device or "cpu",
                "node": m.selection.status.node,
                "pod": m.runtime.pod or m.selection.status.pod,
                "simulated_gpu": m.runtime.simulated_gpu,
                "random_weights": m.runtime.random_weights,
                "measured": m.memory_gib is not None,
                "degraded": degraded.message(m.selection.status.conditions),
                "allocated_device": _allocated(m.selection.status),
                # Where the task's requests go (docs/inference.md); additive to the contract.
                "endpoint": _endpoint(m.selection.status),
            }
            for m in loaded
        },
        "total_vram_allocated_gb": round_gb(sum(m.memory_gib or 0.0 for m in on_gpu)),
        "total_vram_available_gb": gpus.total_gib,
        "cuda_available": gpus.real,
        "device": str(real[0].runtime.device) if real else "cpu",
        "simulated_gpu": gpus.simulated,
        "vram_scope": "cluster" if state.cluster_wide else "namespace",
        "gpus": gpu_holdings(state, gpus),
        "quota": quota_view(state),  # this namespace's GPU-memory quota (docs/tenants.md)
        "loading": loading_section(state),  # models on their way to Ready (docs/weights.md)
    }


def _endpoint(status: SelectionStatus) -> dict[str, Any] | None:
    endpoint = status.endpoint
    if endpoint is None:
        return None
    return {
        "route": endpoint.route,
        "service": endpoint.service,
        "url": endpoint.url,
        "serving_model": endpoint.serving_model,
    }


def gpu_holdings(state: ClusterState, gpus: GpuView) -> list[dict[str, Any]]:
    """Each GPU the totals cover, and which selections (of any namespace seen) hold it.

    A selection holds a GPU while the operator's status names its node and
    GPU index; its size is what its pod measured, else what the catalog declares.
    """
    held: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for key, sel in holders(state):
        status = sel.status
        index = planned_gpu(status)
        assert status.node is not None and index is not None
        measured = status.runtime.measured_memory_gb if status.runtime else None
        if measured is None:
            measured = status.measured_memory_gb
        held.setdefault((status.node, index), []).append(
            {
                "selection": key,
                "task": sel.spec.task,
                "model": sel.spec.model,
                "phase": str(status.phase),
                "memory_gb": _gb(measured),
                "declared_memory_gb": _gb(status.declared_memory_gb),
            }
        )
    return [
        {
            "node": g.node,
            "index": g.index,
            "memory_gb": round_gb(g.memory_gib),
            "simulated": g.simulated,
            "held_by": held.get((g.node, g.index), []),
        }
        for g in gpus.gpus
    ]


def holders(state: ClusterState) -> list[tuple[str, Selection]]:
    """("namespace/name", selection) of every selection the operator placed on a GPU."""
    own = [(f"{state.namespace}/{sel.name}", sel) for sel in state.selections.values()]
    return sorted(
        (key, sel)
        for key, sel in [*own, *state.peers.items()]
        if sel.status.node is not None
        and planned_gpu(sel.status) is not None
        and sel.status.phase in HOLDING
    )


def planned_gpu(sel_status: SelectionStatus) -> int | None:
    """The GPU index the operator counts the selection against (else the one its pod reports).

    Pods are not pinned to a GPU index yet, so the operator keeps the two apart:
    `plannedGpuIndex` for accounting, `gpuIndex` for what the pod says it uses.
    """
    if sel_status.planned_gpu_index is not None:
        return sel_status.planned_gpu_index
    return sel_status.gpu_index


def vram_by_gpu(state: ClusterState, loaded: Sequence[LoadedModel]) -> dict[tuple[str, int], float]:
    """Measured memory of loaded models per (node, GPU index), for the metrics."""
    out: dict[tuple[str, int], float] = {}
    for m in loaded:
        status = m.selection.status
        if m.gpu_device is None or status.node is None:
            continue
        key = (status.node, planned_gpu(sel_status=status) or 0)
        out[key] = out.get(key, 0.0) + (m.memory_gib or 0.0)
    return out


def _gb(value: float | None) -> float | None:
    """A size by the one rounding rule (domain/units.py); None: not known."""
    return None if value is None else round_gb(value)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, SECONDS_DIGITS)


def _real_cuda(m: LoadedModel, gpus: GpuView) -> bool:
    """Whether the model really runs on a CUDA device (not the CPU of a simulated GPU)."""
    device = m.runtime.device or ""
    simulated = m.runtime.simulated_gpu or gpus.is_simulated(m.selection.status.node)
    return device.startswith("cuda") and not simulated


def to_json(body: Any) -> bytes:
    """Compact JSON bytes, as served."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _allocated(status: SelectionStatus) -> dict[str, Any] | None:
    """dra mode: the GPU allocated to the pod's ResourceClaim (uuid, index, driver, pool,
    device, claim), as the operator read it from the claim; None otherwise."""
    device = status.allocated_device
    return None if device is None else device.model_dump(mode="json")


def _gpu_device(sel: Selection, runtime: RuntimeReport) -> str | None:
    device = runtime.device or ""
    if device.startswith("cuda"):
        return device
    # On a simulated GPU the process runs on the CPU but holds the GPU's share of VRAM.
    if runtime.simulated_gpu or planned_gpu(sel.status) is not None:
        return sel.status.device if (sel.status.device or "").startswith("cuda") else "cuda:0"
    return None
