"""GPUs and CPU nodes read from Node objects."""

from __future__ import annotations

from typing import Any

from fovea.domain import constants as c
from fovea.domain.gpus import CpuNode, Gpu, cpu_nodes, gpus_from_nodes
from fovea.domain.resources import GpuOverride


def node(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    allocatable: dict[str, str] | None = None,
    ready: str | None = "True",
    unschedulable: bool = False,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    spec: dict[str, Any] = {"unschedulable": unschedulable}
    if taints:
        spec["taints"] = taints
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"allocatable": allocatable or {}, "conditions": conditions},
    }


def gfd(count: int, mib: int, product: str = "NVIDIA-A10") -> dict[str, str]:
    return {
        c.NODE_LABEL_GPU_COUNT: str(count),
        c.NODE_LABEL_GPU_MEMORY_MIB: str(mib),
        c.NODE_LABEL_GPU_PRODUCT: product,
    }


def test_feature_discovery_labels_give_count_memory_and_product() -> None:
    nodes = [
        node("b", labels=gfd(2, 24576), allocatable={c.RESOURCE_GPU: "2"}),
        node("a", labels=gfd(1, 81920, "NVIDIA-H100"), allocatable={c.RESOURCE_GPU: "1"}),
    ]
    assert gpus_from_nodes(nodes) == [
        Gpu("a", 0, 80.0, "NVIDIA-H100"),
        Gpu("b", 0, 24.0, "NVIDIA-A10"),
        Gpu("b", 1, 24.0, "NVIDIA-A10"),
    ]


def test_time_slicing_replicas_count_physical_gpus() -> None:
    labels = {c.NODE_LABEL_GPU_MEMORY_MIB: "16384", c.NODE_LABEL_GPU_REPLICAS: "4"}
    by_allocatable = node("n", labels=labels, allocatable={c.RESOURCE_GPU: "8"})
    assert [g.index for g in gpus_from_nodes([by_allocatable])] == [0, 1]
    labels[c.NODE_LABEL_GPU_COUNT] = "2"
    assert len(gpus_from_nodes([node("n", labels=labels, allocatable={c.RESOURCE_GPU: "8"})])) == 2


def test_cordoned_not_ready_and_unknown_nodes_offer_nothing() -> None:
    labels = gfd(1, 8192)
    nodes = [
        node("cordoned", labels=labels, unschedulable=True),
        node("not-ready", labels=labels, ready="False"),
        node("no-condition", labels=labels, ready=None),
        node("no-memory-label", labels={c.NODE_LABEL_GPU_COUNT: "1"}),
        node("plugin-down", labels=labels, allocatable={c.RESOURCE_GPU: "0"}),
        node("garbage", labels={c.NODE_LABEL_GPU_COUNT: "x", c.NODE_LABEL_GPU_MEMORY_MIB: "y"}),
    ]
    assert gpus_from_nodes(nodes) == []


def test_overrides_replace_labels_only_for_usable_nodes() -> None:
    nodes = [
        node("plain", allocatable={c.RESOURCE_GPU: "2"}),
        node("labelled", labels=gfd(4, 8192)),
        node("down", ready="False"),
    ]
    overrides = [
        GpuOverride(node="plain", count=2, memory_gb=40.0, product="A100"),
        GpuOverride(node="labelled", count=1, memory_gb=16.0),
        GpuOverride(node="down", count=1, memory_gb=16.0),
        GpuOverride(node="absent", count=1, memory_gb=16.0),
    ]
    assert gpus_from_nodes(nodes, overrides) == [
        Gpu("labelled", 0, 16.0, "NVIDIA-A10"),
        Gpu("plain", 0, 40.0, "A100"),
        Gpu("plain", 1, 40.0, "A100"),
    ]


def test_simulated_gpus_say_so() -> None:
    labels = {**gfd(1, 4096, "simulated"), c.NODE_LABEL_SIMULATED: "true"}
    (gpu,) = gpus_from_nodes([node("sim", labels=labels)])
    assert gpu.simulated and gpu.memory_gib == 4.0


def test_cpu_nodes_are_ready_schedulable_and_untainted() -> None:
    nodes = [
        node("cpu", allocatable={"cpu": "4", "memory": "16Gi"}),
        node("gpu-open", labels=gfd(1, 8192), allocatable={"cpu": "8000m", c.RESOURCE_GPU: "1"}),
        node(
            "gpu-tainted",
            allocatable={"cpu": "8", "memory": "32Gi"},
            taints=[{"key": c.TAINT_GPU, "effect": "NoSchedule"}],
        ),
        node(
            "soft",
            allocatable={"memory": "1Gi"},
            taints=[{"key": "x", "effect": "PreferNoSchedule"}],
        ),
        node("cordoned", allocatable={"cpu": "4"}, unschedulable=True),
        node("down", ready="False"),
    ]
    assert cpu_nodes(nodes) == [
        CpuNode("cpu", 16.0, 4.0, False),
        CpuNode("gpu-open", 0.0, 8.0, True),
        CpuNode("soft", 1.0, 0.0, False),
    ]
