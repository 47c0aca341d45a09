"""The local cluster's DRA objects (pure): what the agent publishes, what a pod is shown."""

from __future__ import annotations

from typing import Any

import pytest

from fovea.domain import dra as vocabulary
from fovea.localcluster import dra
from fovea.localcluster.nodes import GpuSet, NodePlan
from fovea.localcluster.podspec import ContainerConfigError

SIMULATED = NodePlan("fovea-gpu-0", 8, 1 << 34, GpuSet(2, 24 * 1024, "Simulated-GPU-24GiB", True))
REAL = NodePlan(
    "fovea-gpu-1",
    8,
    1 << 34,
    GpuSet(1, 81559, "NVIDIA-H200", False, device_indices=(3,), uuids=("GPU-1234",)),
)


def test_the_slice_publishes_each_gpu_as_the_nvidia_driver_does() -> None:
    body = dra.resource_slice(SIMULATED, "node-uid")
    assert body is not None
    spec = body["spec"]
    assert (spec["driver"], spec["nodeName"], spec["pool"]["name"]) == (
        "gpu.nvidia.com",
        "fovea-gpu-0",
        "fovea-gpu-0",
    )
    assert body["metadata"]["ownerReferences"][0]["uid"] == "node-uid"
    devices = vocabulary.devices_from_slices([body])
    assert [(d.name, d.uuid, d.index, d.simulated) for d in devices] == [
        ("gpu-0", "GPU-sim-fovea-gpu-0-0", 0, True),
        ("gpu-1", "GPU-sim-fovea-gpu-0-1", 1, True),
    ]
    assert devices[0].memory_bytes == 24 * 1024**3
    assert all(d["allowMultipleAllocations"] for d in spec["devices"])
    real = vocabulary.devices_from_slices([dra.resource_slice(REAL, "u") or {}])
    assert [(d.name, d.uuid, d.index, d.simulated) for d in real] == [
        ("gpu-3", "GPU-1234", 0, False)
    ]
    assert dra.resource_slice(NodePlan("fovea-cpu-0", 8, 1 << 34), "u") is None


def test_the_device_class_selects_the_drivers_gpus() -> None:
    body = dra.device_class()
    assert body["metadata"]["name"] == "gpu.nvidia.com"
    assert "device.driver == 'gpu.nvidia.com'" in body["spec"]["selectors"][0]["cel"]["expression"]


def claim(device: str, pool: str = "fovea-gpu-0", reserved: str = "pod-uid") -> dict[str, Any]:
    result = {"driver": "gpu.nvidia.com", "pool": pool, "device": device, "request": "gpu"}
    return {
        "metadata": {"name": "c"},
        "status": {
            "allocation": {"devices": {"results": [result]}},
            "reservedFor": [{"resource": "pods", "name": "p", "uid": reserved}],
        },
    }


def test_a_pod_sees_exactly_its_allocated_gpu_by_uuid() -> None:
    env = dra.visible_devices([claim("gpu-1")], SIMULATED, "pod-uid")
    assert env == {
        "CUDA_VISIBLE_DEVICES": "GPU-sim-fovea-gpu-0-1",
        "NVIDIA_VISIBLE_DEVICES": "GPU-sim-fovea-gpu-0-1",
    }
    real = dra.visible_devices([claim("gpu-3", pool="fovea-gpu-1")], REAL, "pod-uid")
    assert real["CUDA_VISIBLE_DEVICES"] == "GPU-1234"


@pytest.mark.parametrize(
    ("claim_", "why"),
    [
        ({"metadata": {"name": "c"}, "status": {}}, "not allocated"),
        (claim("gpu-1", reserved="someone-else"), "not reserved for this pod"),
        (claim("gpu-0", pool="fovea-gpu-9"), "not on node"),
    ],
)
def test_a_pod_waits_until_its_claim_is_allocated_and_reserved_for_it(
    claim_: dict[str, Any], why: str
) -> None:
    with pytest.raises(ContainerConfigError, match=why):
        dra.visible_devices([claim_], SIMULATED, "pod-uid")
