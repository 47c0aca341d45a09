"""Which nodes the local cluster registers, and the Node objects that describe them.

Pure: parsing the `--gpus` spec, planning node names and sizes, and building
Node and Lease bodies as plain dicts. Finding real GPUs (NVML) lives in
`fovea.localcluster.nvml`; talking to the API server lives in `fovea.localcluster.agent`.

The `--gpus` spec is a comma-separated list of GPU nodes; each item is
`[COUNTx]SIZE[:PRODUCT]`: COUNT GPUs (default 1) of SIZE memory each (a size
as `fovea.domain.units.parse_size` reads it: 24GB = 24GiB = 24Gi) on one
node, with an optional product name. The default,
`2x24GiB,1x80GiB`, registers one node with two 24 GiB GPUs (the case of two
models sharing a machine) and one node with one 80 GiB GPU (a large model),
plus, always, one CPU-only node. `none` registers only the CPU node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fovea.domain import constants as c
from fovea.domain.units import MIB, parse_size

DEFAULT_SIMULATED_GPUS = "2x24GiB,1x80GiB"
MAX_GPUS_PER_NODE = 16
PODS_PER_NODE = 110
GPU_NODE_PREFIX = "fovea-gpu-"
CPU_NODE_NAME = "fovea-cpu-0"
# The local cluster's GPUs are time-sliced, as the NVIDIA device plugin does with
# `sharing.timeSlicing.replicas`: each GPU is advertised this many times, so that
# several model pods can share one; the operator's VRAM accounting is the guard.
TIME_SLICING_REPLICAS = 8

_ITEM = re.compile(
    r"^(?:(?P<count>\d+)\s*[xX]\s*)?(?P<size>\d+(?:\.\d+)?\s*[A-Za-z]+)"
    r"(?::(?P<product>[A-Za-z0-9][A-Za-z0-9_.-]{0,62}))?$"
)


class NodeSpecError(ValueError):
    """The `--gpus` spec cannot be parsed; the message says which item and why."""


@dataclass(frozen=True)
class GpuSet:
    """The GPUs of one node: all alike, as GPU feature discovery labels assume."""

    count: int
    memory_mib: int
    product: str
    simulated: bool
    # Real GPUs only: their NVML indices, exposed to the node's pods as
    # CUDA_VISIBLE_DEVICES so that `cuda:N` counts within the node.
    device_indices: tuple[int, ...] = ()
    # Real GPUs only: their NVML uuids, published in the node's ResourceSlice (DRA).
    uuids: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodePlan:
    """One Node the local cluster registers and whose pods its agent runs."""

    name: str
    cpu: int
    memory_bytes: int
    gpus: GpuSet | None = None

    @property
    def simulated_gpu(self) -> bool:
        return self.gpus is not None and self.gpus.simulated


def simulated_product(memory_mib: int) -> str:
    """The product label of a simulated GPU: it says it is simulated, and its size."""
    if memory_mib % 1024 == 0:
        return f"Simulated-GPU-{memory_mib // 1024}GiB"
    return f"Simulated-GPU-{memory_mib}MiB"


def parse_gpus(spec: str) -> list[GpuSet]:
    """Parse a `--gpus` spec into one simulated GpuSet per GPU node.

    `none` (or an empty string) means no GPU node. Raises NodeSpecError with the
    offending item on anything else that is not `[COUNTx]SIZE[:PRODUCT]`.
    """
    text = spec.strip()
    if text.lower() in ("", "none"):
        return []
    sets: list[GpuSet] = []
    for raw in text.split(","):
        item = raw.strip()
        match = _ITEM.match(item)
        size_bytes = _size(match["size"]) if match else None
        if match is None or size_bytes is None:
            raise NodeSpecError(
                f"invalid GPU node {item!r} in --gpus {spec!r}: expected [COUNTx]SIZE[:PRODUCT], "
                "e.g. 2x24GB or 1x80GB:NVIDIA-A100-80GB (units GB, GiB, Gi, MB, MiB, Mi; "
                "GB = GiB = 1024^3 bytes)"
            )
        count = int(match["count"] or 1)
        if not 1 <= count <= MAX_GPUS_PER_NODE:
            raise NodeSpecError(
                f"invalid GPU node {item!r}: GPU count must be 1..{MAX_GPUS_PER_NODE}, got {count}"
            )
        memory_mib = round(size_bytes / MIB)
        if memory_mib < 1:
            raise NodeSpecError(f"invalid GPU node {item!r}: GPU memory must be positive")
        product = match["product"] or simulated_product(memory_mib)
        sets.append(GpuSet(count=count, memory_mib=memory_mib, product=product, simulated=True))
    return sets


def _size(text: str) -> int | None:
    """Bytes of a GPU's size (GB and MB: the contract's binary units); None if not one."""
    try:
        return parse_size(text)
    except ValueError:
        return None


def resolve_gpu_spec(spec: str, detected: list[GpuSet]) -> list[GpuSet]:
    """Turn `--gpus` into GPU sets: `auto`, `real`, `none` or an explicit spec.

    `auto` registers the machine's real GPUs (`detected`, from NVML) when there
    are any, else the simulated default; `real` insists on real GPUs.
    """
    word = spec.strip().lower()
    if word == "auto":
        return detected or parse_gpus(DEFAULT_SIMULATED_GPUS)
    if word in ("real", "nvml"):
        if not detected:
            raise NodeSpecError("--gpus real: no NVIDIA GPU was found through NVML")
        return detected
    return parse_gpus(spec)


def plan_nodes(gpu_sets: list[GpuSet], cpu: int, memory_bytes: int) -> list[NodePlan]:
    """One node per GPU set (`fovea-gpu-N`), then the CPU-only node `fovea-cpu-0`.

    Every node advertises the whole machine's CPUs and memory: they are views of
    the same host, and the scheduler fits pods to each node separately.
    """
    plans = [
        NodePlan(name=f"{GPU_NODE_PREFIX}{i}", cpu=cpu, memory_bytes=memory_bytes, gpus=gpus)
        for i, gpus in enumerate(gpu_sets)
    ]
    plans.append(NodePlan(name=CPU_NODE_NAME, cpu=cpu, memory_bytes=memory_bytes))
    return plans


def node_labels(plan: NodePlan) -> dict[str, str]:
    """Well-known node labels plus GPU feature discovery labels on GPU nodes."""
    labels = {
        "kubernetes.io/hostname": plan.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        c.LABEL_LOCAL_NODE: "true",
    }
    if plan.gpus is not None:
        labels[c.NODE_LABEL_GPU_COUNT] = str(plan.gpus.count)
        labels[c.NODE_LABEL_GPU_MEMORY_MIB] = str(plan.gpus.memory_mib)
        labels[c.NODE_LABEL_GPU_PRODUCT] = plan.gpus.product
        labels["nvidia.com/gpu.present"] = "true"
        labels[c.NODE_LABEL_GPU_REPLICAS] = str(TIME_SLICING_REPLICAS)
        labels["nvidia.com/gpu.sharing-strategy"] = "time-slicing"
        if plan.gpus.simulated:
            labels[c.NODE_LABEL_SIMULATED] = "true"
    return labels


def node_resources(plan: NodePlan) -> dict[str, str]:
    """Capacity (and allocatable: nothing is reserved here) of one node."""
    resources = {
        "cpu": str(plan.cpu),
        "memory": f"{plan.memory_bytes // 1024}Ki",
        "pods": str(PODS_PER_NODE),
        "ephemeral-storage": "100Gi",
    }
    if plan.gpus is not None:
        resources[c.RESOURCE_GPU] = str(plan.gpus.count * TIME_SLICING_REPLICAS)
    return resources


def node_conditions(now: str) -> list[dict[str, str]]:
    """A healthy kubelet's conditions, stamped with the heartbeat time `now` (RFC 3339)."""
    healthy = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    return [
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": "fovea-models node agent is running",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        for kind, status, reason in healthy
    ]


def node_status(
    plan: NodePlan, kube_version: str, now: str, kernel: str = "", kubelet_port: int = 0
) -> dict[str, Any]:
    """The Node status the agent reports: resources, Ready, addresses and node info.

    `kubelet_port` is the agent's log endpoint (0: none), where the API server
    reads pods' logs."""
    resources = node_resources(plan)
    return {
        "capacity": resources,
        "allocatable": dict(resources),
        "conditions": node_conditions(now),
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": plan.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": kernel,
            "osImage": "fovea-models local cluster",
            "containerRuntimeVersion": "fovea-node-agent://local-process",
            "kubeletVersion": kube_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def node_object(
    plan: NodePlan, kube_version: str, now: str, kernel: str = "", kubelet_port: int = 0
) -> dict[str, Any]:
    """The whole Node, as created on registration (a kubelet creates it with status)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": plan.name, "labels": node_labels(plan)},
        "spec": {},
        "status": node_status(plan, kube_version, now, kernel, kubelet_port),
    }


def lease_object(node_name: str, node_uid: str, now_micro: str, duration_s: int) -> dict[str, Any]:
    """The node's heartbeat Lease in kube-node-lease, owned by its Node."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name,
            "namespace": "kube-node-lease",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": duration_s,
            "renewTime": now_micro,
        },
    }
