"""DRA vocabulary: devices read from ResourceSlices, claims that pin one GPU, allocations."""

from __future__ import annotations

from typing import Any

from fovea.domain import dra
from fovea.domain.dra import DraSharing


def slice_of(node: str, *devices: dict[str, Any], driver: str = dra.DRIVER) -> dict[str, Any]:
    return {
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": list(devices),
        }
    }


def gpu(
    name: str, uuid: str, index: int | None = None, memory: str = "24Gi", shareable: bool = True
) -> dict[str, Any]:
    attrs: dict[str, Any] = {"uuid": {"string": uuid}, "productName": {"string": "NVIDIA-A10"}}
    if index is not None:
        attrs["index"] = {"int": index}
    device: dict[str, Any] = {
        "name": name,
        "attributes": attrs,
        "capacity": {"memory": {"value": memory}},
    }
    if shareable:
        device["allowMultipleAllocations"] = True
    return device


def test_devices_come_from_the_nvidia_drivers_slices_only() -> None:
    slices = [
        slice_of("n1", gpu("gpu-1", "GPU-b", index=1), gpu("gpu-0", "GPU-a", index=0)),
        slice_of("n0", gpu("gpu-0", "GPU-c")),  # no index attribute: from the name gpu-<minor>
        slice_of("n2", gpu("gpu-0", "GPU-x", index=0), driver="other.example.com"),
    ]
    devices = dra.devices_from_slices(slices)
    assert [(d.node, d.index, d.uuid) for d in devices] == [
        ("n0", 0, "GPU-c"),
        ("n1", 0, "GPU-a"),
        ("n1", 1, "GPU-b"),
    ]
    assert devices[1].memory_bytes == 24 * 1024**3 and devices[1].product == "NVIDIA-A10"
    assert dra.device_at(devices, "n1", 1) == devices[2]
    assert dra.device_at(devices, "n2", 0) is None


def test_dra_is_available_with_the_device_class_and_a_device() -> None:
    devices = dra.devices_from_slices([slice_of("n", gpu("gpu-0", "GPU-a", 0))])
    named = [{"metadata": {"name": dra.DEVICE_CLASS}}]
    assert dra.dra_available(named, devices)
    assert not dra.dra_available([], devices)
    assert not dra.dra_available(named, [])


def test_auto_leaves_dra_alone_when_a_device_cannot_be_shared() -> None:
    # The NVIDIA driver's own slices: one claim per device, so one model per GPU.
    exclusive = dra.devices_from_slices([slice_of("n", gpu("gpu-0", "GPU-a", 0, shareable=False))])
    named = [{"metadata": {"name": dra.DEVICE_CLASS}}]
    assert not exclusive[0].shareable
    assert not dra.dra_available(named, exclusive)
    reason = dra.dra_unavailable_reason(named, exclusive)
    assert reason is not None and "allowMultipleAllocations" in reason and "n/gpu-0" in reason
    assert dra.dra_unavailable_reason([], exclusive) == "no DeviceClass gpu.nvidia.com"


def test_a_claim_selects_exactly_its_gpu_by_uuid_with_the_drivers_config() -> None:
    device = dra.devices_from_slices([slice_of("node-a", gpu("gpu-0", "GPU-a", 0))])[0]
    claim = dra.claim_for("team", "det", device, DraSharing.TIME_SLICING, 8.0)
    body = dra.claim_body(claim, [("sel", "uid-1")])
    request = body["spec"]["devices"]["requests"][0]
    assert request["name"] == dra.REQUEST
    assert request["exactly"]["deviceClassName"] == "gpu.nvidia.com"
    assert request["exactly"]["selectors"] == [
        {"cel": {"expression": 'device.attributes["gpu.nvidia.com"].uuid == "GPU-a"'}}
    ]
    config = body["spec"]["devices"]["config"][0]
    assert config["requests"] == [dra.REQUEST]
    assert config["opaque"]["driver"] == "gpu.nvidia.com"
    assert config["opaque"]["parameters"] == {
        "apiVersion": "resource.nvidia.com/v1beta1",
        "kind": "GpuConfig",
        "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Default"}},
    }
    assert body["metadata"]["namespace"] == "team"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert len(claim.name) <= 63 and claim.name.startswith("det-gpu-node-a-0-")


def test_claims_are_one_per_selection_and_gpu_mps_claims_one_per_budget() -> None:
    device = dra.devices_from_slices([slice_of("n", gpu("gpu-0", "GPU-a", 0))])[0]
    other = dra.devices_from_slices([slice_of("n", gpu("gpu-1", "GPU-b", 1))])[0]
    ts = DraSharing.TIME_SLICING
    assert (
        dra.claim_for("ns", "a", device, ts, 4).name == dra.claim_for("ns", "a", device, ts, 9).name
    )
    assert (
        dra.claim_for("ns", "a", device, ts, 4).name != dra.claim_for("ns", "a", other, ts, 4).name
    )
    assert (
        dra.claim_for("ns", "a", device, ts, 4).name != dra.claim_for("ns", "b", device, ts, 4).name
    )
    mps4 = dra.claim_for("ns", "a", device, DraSharing.MPS, 4)
    assert mps4.name != dra.claim_for("ns", "a", device, DraSharing.MPS, 9).name
    params = dra.claim_body(mps4, [])["spec"]["devices"]["config"][0]["opaque"]["parameters"]
    assert params["sharing"] == {
        "strategy": "MPS",
        "mpsConfig": {"defaultPinnedDeviceMemoryLimit": "4096Mi"},
    }


def test_the_allocation_names_the_device_and_its_uuid() -> None:
    devices = dra.devices_from_slices([slice_of("n", gpu("gpu-3", "GPU-z", 1))])
    claim = {
        "metadata": {"name": "c"},
        "status": {
            "allocation": {
                "devices": {"results": [{"driver": dra.DRIVER, "pool": "n", "device": "gpu-3"}]}
            },
            "reservedFor": [{"resource": "pods", "name": "p", "uid": "u1"}],
        },
    }
    found = dra.allocated(claim, devices)
    assert found == dra.AllocatedDevice(dra.DRIVER, "n", "gpu-3", "c", "GPU-z", 1)
    assert dra.reserved_for(claim, "u1") and not dra.reserved_for(claim, "u2")
    assert dra.allocated({"metadata": {"name": "c"}}, devices) is None


def test_a_pod_references_its_claim_by_name() -> None:
    pod_claims, container_claims = dra.pod_claims("gpu-n-0-abc")
    pod = {"spec": {"resourceClaims": pod_claims}}
    assert dra.claim_names(pod) == ["gpu-n-0-abc"]
    assert container_claims == [{"name": pod_claims[0]["name"]}]


def test_waiting_for_a_shared_claims_allocation_is_no_refusal() -> None:
    from fovea.domain.nodes import unschedulable

    def pod(message: str) -> dict[str, Any]:
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        return {"status": {"conditions": [{**cond, "message": message}]}}

    allocating = (
        "0/7 nodes are available: resource claim b/gpu-n-0-abc is in the process of being "
        "allocated. no new claims to deallocate"
    )
    assert unschedulable(pod(allocating)) is None
    assert unschedulable(pod("0/3 nodes are available: 1 Insufficient cpu.")) is not None
