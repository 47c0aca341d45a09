"""The `--gpus` spec and the Node objects built from it (pure, no cluster)."""

from __future__ import annotations

import pytest

from fovea.domain import constants as c
from fovea.localcluster.nodes import (
    CPU_NODE_NAME,
    DEFAULT_SIMULATED_GPUS,
    TIME_SLICING_REPLICAS,
    GpuSet,
    NodeSpecError,
    lease_object,
    node_object,
    parse_gpus,
    plan_nodes,
    resolve_gpu_spec,
)

GIB = 1024**3


def test_default_spec_is_two_gpu_nodes() -> None:
    sets = parse_gpus(DEFAULT_SIMULATED_GPUS)
    assert [(s.count, s.memory_mib) for s in sets] == [(2, 24 * 1024), (1, 80 * 1024)]
    assert all(s.simulated for s in sets)
    assert sets[0].product == "Simulated-GPU-24GiB"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("24GiB", [(1, 24576, "Simulated-GPU-24GiB")]),
        ("1x80Gi", [(1, 81920, "Simulated-GPU-80GiB")]),
        (
            " 4 x 16GiB , 512MiB ",
            [(4, 16384, "Simulated-GPU-16GiB"), (1, 512, "Simulated-GPU-512MiB")],
        ),
        ("2x40GiB:NVIDIA-A100-SXM4-40GB", [(2, 40960, "NVIDIA-A100-SXM4-40GB")]),
        ("1.5GiB", [(1, 1536, "Simulated-GPU-1536MiB")]),
        # GB is what every message prints, and it is GiB (domain/units.py): typed as printed.
        ("2x24GB", [(2, 24576, "Simulated-GPU-24GiB")]),
        ("512MB,1x80gb", [(1, 512, "Simulated-GPU-512MiB"), (1, 81920, "Simulated-GPU-80GiB")]),
        ("none", []),
        ("", []),
    ],
)
def test_parse_gpus(spec: str, expected: list[tuple[int, int, str]]) -> None:
    assert [(s.count, s.memory_mib, s.product) for s in parse_gpus(spec)] == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("24G", "'24G'"),  # a Kubernetes quantity's G is 10^9: ambiguous, refused
        ("24", "units GB, GiB"),
        ("2x", "'2x'"),
        ("x24GiB", "'x24GiB'"),
        ("0x24GiB", "GPU count must be 1..16"),
        ("17x24GiB", "GPU count must be 1..16"),
        ("24GiB,,80GiB", "''"),
        ("2x24GiB:bad product", "'2x24GiB:bad product'"),
        ("0GiB", "positive"),
    ],
)
def test_parse_gpus_rejects_with_the_offending_item(spec: str, fragment: str) -> None:
    with pytest.raises(NodeSpecError) as err:
        parse_gpus(spec)
    assert fragment in str(err.value)


def test_resolve_auto_prefers_real_gpus() -> None:
    real = [GpuSet(2, 81559, "NVIDIA-H100-80GB-HBM3", simulated=False, device_indices=(0, 1))]
    assert resolve_gpu_spec("auto", real) == real
    assert resolve_gpu_spec("AUTO", []) == parse_gpus(DEFAULT_SIMULATED_GPUS)
    assert resolve_gpu_spec("real", real) == real
    assert resolve_gpu_spec("1x8GiB", real) == parse_gpus("1x8GiB")
    with pytest.raises(NodeSpecError, match="no NVIDIA GPU"):
        resolve_gpu_spec("real", [])


def test_plan_nodes_adds_one_cpu_node() -> None:
    plans = plan_nodes(parse_gpus("2x24GiB,1x80GiB"), cpu=2, memory_bytes=24 * GIB)
    assert [p.name for p in plans] == ["fovea-gpu-0", "fovea-gpu-1", CPU_NODE_NAME]
    assert plans[-1].gpus is None and not plans[-1].simulated_gpu
    assert plans[0].simulated_gpu
    assert [p.name for p in plan_nodes([], 2, GIB)] == [CPU_NODE_NAME]


def test_gpu_node_object_has_gfd_labels_and_gpu_capacity() -> None:
    plan = plan_nodes(parse_gpus("2x24GiB"), cpu=2, memory_bytes=24 * GIB)[0]
    node = node_object(plan, "v1.36.3", "2026-01-01T00:00:00Z")
    labels = node["metadata"]["labels"]
    assert labels[c.NODE_LABEL_GPU_COUNT] == "2"
    assert labels[c.NODE_LABEL_GPU_MEMORY_MIB] == "24576"
    assert labels[c.NODE_LABEL_GPU_PRODUCT] == "Simulated-GPU-24GiB"
    assert labels[c.NODE_LABEL_SIMULATED] == "true"
    assert labels[c.LABEL_LOCAL_NODE] == "true"
    status = node["status"]
    assert status["capacity"][c.RESOURCE_GPU] == str(2 * TIME_SLICING_REPLICAS)
    assert labels[c.NODE_LABEL_GPU_REPLICAS] == str(TIME_SLICING_REPLICAS)
    assert status["allocatable"] == status["capacity"]
    assert status["capacity"]["memory"] == f"{24 * 1024 * 1024}Ki"
    ready = [x for x in status["conditions"] if x["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert status["nodeInfo"]["kubeletVersion"] == "v1.36.3"


def test_real_and_cpu_nodes_are_not_labelled_simulated() -> None:
    real = GpuSet(1, 81559, "NVIDIA-H100", simulated=False, device_indices=(0,))
    gpu_plan, cpu_plan = plan_nodes([real], cpu=16, memory_bytes=128 * GIB)
    gpu_labels = node_object(gpu_plan, "v1.36.3", "t")["metadata"]["labels"]
    assert c.NODE_LABEL_SIMULATED not in gpu_labels
    assert gpu_labels[c.NODE_LABEL_GPU_PRODUCT] == "NVIDIA-H100"
    cpu = node_object(cpu_plan, "v1.36.3", "t")
    assert not any(k.startswith("nvidia.com/") for k in cpu["metadata"]["labels"])
    assert c.RESOURCE_GPU not in cpu["status"]["capacity"]


def test_lease_is_owned_by_its_node() -> None:
    lease = lease_object("fovea-gpu-0", "uid-1", "2026-01-01T00:00:00.000000Z", 40)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert lease["spec"]["leaseDurationSeconds"] == 40
