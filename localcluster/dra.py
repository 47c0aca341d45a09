"""The local cluster speaks DRA as the NVIDIA DRA driver does (pure builders).

The node agent publishes, per GPU node, one ResourceSlice of driver
`gpu.nvidia.com` (pool: the node's name) with one device per GPU, simulated or
found by NVML, and creates the DeviceClass `gpu.nvidia.com` at start; the real
kube-scheduler allocates claims against them. When the agent starts a pod
whose claim the scheduler allocated (and reserved for the pod, the kubelet's
check), the pod's process sees exactly the allocated GPUs:
`CUDA_VISIBLE_DEVICES` and `NVIDIA_VISIBLE_DEVICES` name them by uuid, as the
driver's CDI spec exposes one device to a container. Vocabulary:
`fovea.domain.dra`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fovea.domain import constants as c
from fovea.domain import dra
from fovea.localcluster.nodes import NodePlan
from fovea.localcluster.podspec import ContainerConfigError

ENV_VISIBLE = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
API_PATH = f"/apis/{dra.API_VERSION}"


def device_class() -> dict[str, Any]:
    """The DeviceClass `gpu.nvidia.com`, as the NVIDIA driver's chart installs it."""
    return {
        "apiVersion": dra.API_VERSION,
        "kind": "DeviceClass",
        "metadata": {"name": dra.DEVICE_CLASS, "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY}},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": f"device.driver == '{dra.DRIVER}' && "
                        f"device.attributes['{dra.DRIVER}'].type == 'gpu'"
                    }
                }
            ]
        },
    }


def gpu_uuid(plan: NodePlan, index: int) -> str:
    """GPU `index` of the node: its NVML uuid, or a stable `GPU-sim-<node>-<index>`."""
    gpus = plan.gpus
    if gpus is not None and not gpus.simulated and index < len(gpus.uuids):
        return gpus.uuids[index]
    return f"GPU-sim-{plan.name}-{index}"


def device_name(plan: NodePlan, index: int) -> str:
    """The device's name in the slice: `gpu-<minor>` as the driver names it (NVML index)."""
    gpus = plan.gpus
    if gpus is not None and index < len(gpus.device_indices):
        return f"gpu-{gpus.device_indices[index]}"
    return f"gpu-{index}"


def slice_name(node: str) -> str:
    return f"{node}-{dra.DRIVER}"


def resource_slice(plan: NodePlan, node_uid: str, generation: int = 1) -> dict[str, Any] | None:
    """The node's ResourceSlice (owned by its Node), or None for a node without GPUs.

    Each device allows several allocations (DRAConsumableCapacity): the claims of
    several namespaces share one GPU, as the planner shares it.
    """
    gpus = plan.gpus
    if gpus is None:
        return None
    devices = [
        {
            "name": device_name(plan, i),
            "attributes": dra.device_attributes(gpu_uuid(plan, i), i, gpus.product, gpus.simulated),
            "capacity": {dra.CAPACITY_MEMORY: {"value": f"{gpus.memory_mib}Mi"}},
            "allowMultipleAllocations": True,
        }
        for i in range(gpus.count)
    ]
    return {
        "apiVersion": dra.API_VERSION,
        "kind": "ResourceSlice",
        "metadata": {
            "name": slice_name(plan.name),
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": plan.name, "uid": node_uid}
            ],
        },
        "spec": {
            "driver": dra.DRIVER,
            "nodeName": plan.name,
            "pool": {"name": plan.name, "generation": generation, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def pod_claim_names(pod: Mapping[str, Any]) -> list[str]:
    """The claims a pod uses: named directly, or made from a template (its status says which)."""
    names = dra.claim_names(pod)
    for status in (pod.get("status") or {}).get("resourceClaimStatuses") or []:
        if status.get("resourceClaimName"):
            names.append(str(status["resourceClaimName"]))
    return names


def visible_devices(
    claims: Iterable[Mapping[str, Any]], plan: NodePlan, pod_uid: str
) -> dict[str, str]:
    """The environment that shows the pod exactly its allocated GPUs on this node.

    Raises ContainerConfigError (the pod waits, as a kubelet's does) when a claim is
    not allocated yet or not reserved for this pod.
    """
    uuids: list[str] = []
    by_name = {
        device_name(plan, i): gpu_uuid(plan, i) for i in range(plan.gpus.count if plan.gpus else 0)
    }
    for claim in claims:
        name = (claim.get("metadata") or {}).get("name")
        allocation = (claim.get("status") or {}).get("allocation")
        if not allocation:
            raise ContainerConfigError(f"resource claim {name} is not allocated yet")
        if not dra.reserved_for(claim, pod_uid):
            raise ContainerConfigError(f"resource claim {name} is not reserved for this pod")
        for result in (allocation.get("devices") or {}).get("results") or []:
            if result.get("driver") != dra.DRIVER:
                continue
            if result.get("pool") != plan.name or result.get("device") not in by_name:
                raise ContainerConfigError(
                    f"resource claim {name}: device {result.get('pool')}/"
                    f"{result.get('device')} is not on node {plan.name}"
                )
            uuids.append(by_name[str(result["device"])])
    if not uuids:
        return {}
    value = ",".join(uuids)
    return dict.fromkeys(ENV_VISIBLE, value)
