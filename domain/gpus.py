"""The GPUs and CPU nodes of a cluster, read from Node objects (plain dicts).

GPU facts come from what the NVIDIA device plugin and GPU feature discovery
(GFD) publish on each Node, or from a catalog's `gpuOverrides` for clusters
without GFD:

- `status.allocatable["nvidia.com/gpu"]`: how many GPUs pods may request. A
  node whose allocatable count is 0 has no usable GPU (device plugin down).
- label `nvidia.com/gpu.count`: physical GPUs. With time-slicing the device
  plugin advertises `count * replicas` GPUs; the planner needs the physical
  ones, so the label wins, else allocatable divided by `nvidia.com/gpu.replicas`.
- label `nvidia.com/gpu.memory`: memory of one GPU in MiB (GFD's unit).
- label `nvidia.com/gpu.product`, and `fovea.dev/simulated-gpu: "true"` on the
  local cluster's simulated GPUs.

A cordoned (`spec.unschedulable`) or not-Ready node offers nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fovea.domain import constants as c
from fovea.domain.resources import GpuOverride
from fovea.domain.units import GIB, parse_quantity

_GPU_TAINT_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True, slots=True)
class Gpu:
    """One physical GPU (or one MIG slice the device plugin advertises as a GPU)."""

    node: str
    index: int
    memory_gib: float
    product: str | None = None
    simulated: bool = False


@dataclass(frozen=True, slots=True)
class CpuNode:
    """A Ready, schedulable node with no NoSchedule/NoExecute taint: CPU pods may run there."""

    name: str
    memory_gib: float
    cpu: float
    has_gpu: bool


def gpus_from_nodes(
    nodes: Iterable[Mapping[str, Any]], overrides: Sequence[GpuOverride] = ()
) -> list[Gpu]:
    """Every usable GPU of the given Node objects, sorted by (node, index).

    An override for a node replaces what its labels say (count, memory,
    product); overrides naming nodes that do not exist, or are cordoned or
    not Ready, add nothing. Nodes without a GPU memory figure are skipped:
    the planner cannot account for memory it does not know.
    """
    by_node = {o.node: o for o in overrides}
    gpus: list[Gpu] = []
    for node in nodes:
        if not node_usable(node):
            continue
        name = _name(node)
        labels = _labels(node)
        simulated = labels.get(c.NODE_LABEL_SIMULATED) == "true"
        override = by_node.get(name)
        product = labels.get(c.NODE_LABEL_GPU_PRODUCT)
        memory_gib: float | None
        if override is not None:
            count, memory_gib = override.count, override.memory_gb
            product = override.product or product
        else:
            count, memory_gib = _gpu_count(node, labels), _memory_gib(labels)
        if memory_gib is None:
            continue
        gpus.extend(Gpu(name, i, memory_gib, product, simulated) for i in range(count))
    return sorted(gpus, key=lambda g: (g.node, g.index))


def cpu_nodes(nodes: Iterable[Mapping[str, Any]]) -> list[CpuNode]:
    """Nodes where a CPU (fallback) pod can run, sorted by name.

    GPU nodes usually carry a `nvidia.com/gpu:NoSchedule` taint that only GPU
    pods tolerate, so any NoSchedule/NoExecute taint rules a node out here.
    """
    out: list[CpuNode] = []
    for node in nodes:
        if not node_usable(node):
            continue
        taints = (node.get("spec") or {}).get("taints") or []
        if any(t.get("effect") in _GPU_TAINT_EFFECTS for t in taints):
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        memory = _quantity(allocatable.get("memory"))
        cpu = _quantity(allocatable.get("cpu"))
        has_gpu = (_quantity(allocatable.get(c.RESOURCE_GPU)) or 0) > 0
        out.append(CpuNode(_name(node), (memory or 0) / GIB, cpu or 0.0, has_gpu))
    return sorted(out, key=lambda n: n.name)


def node_usable(node: Mapping[str, Any]) -> bool:
    """Schedulable (not cordoned) and Ready."""
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _gpu_count(node: Mapping[str, Any], labels: Mapping[str, str]) -> int:
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    advertised = _quantity(allocatable.get(c.RESOURCE_GPU))
    if advertised is not None and advertised <= 0:
        return 0  # the device plugin offers none: labels alone schedule nothing
    physical = _int(labels.get(c.NODE_LABEL_GPU_COUNT))
    if physical is not None:
        return physical
    if advertised is None:
        return 0
    replicas = _int(labels.get(c.NODE_LABEL_GPU_REPLICAS)) or 1
    return int(advertised) // replicas


def _memory_gib(labels: Mapping[str, str]) -> float | None:
    mib = _quantity(labels.get(c.NODE_LABEL_GPU_MEMORY_MIB))
    return None if mib is None or mib <= 0 else mib / 1024


def _quantity(value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(parse_quantity(value))
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    number = _quantity(value)
    return None if number is None or number < 0 else int(number)


def _name(node: Mapping[str, Any]) -> str:
    return str((node.get("metadata") or {}).get("name", ""))


def _labels(node: Mapping[str, Any]) -> Mapping[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}
