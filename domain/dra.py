"""Dynamic Resource Allocation (DRA): GPUs as ResourceSlice devices, claims that pin them.

Pure: plain dicts in, plain dicts and frozen dataclasses out. The operator
(`fovea.operator.reconcile`) uses it in the `dra` sharing mode, the local
cluster's node agent (`fovea.localcluster.dra`) to publish and read the same
objects, so both speak the NVIDIA DRA driver's vocabulary (`k8s-dra-driver-gpu`):

- driver and DeviceClass `gpu.nvidia.com`; one device per GPU, attributes
  `uuid`, `index`, `productName` (the driver's own devices are named `gpu-<minor>`),
  capacity `memory`;
- one ResourceClaim per (selection, GPU, sharing config) in use, whose CEL
  selector names the GPU's `uuid`, so the scheduler allocates exactly the GPU
  the planner chose; the selection's pods there reference it (a rolling
  replacement shares it with its predecessor);
- the sharing config in the claim's `spec.devices.config[].opaque`, in the
  driver's `GpuConfig` (`resource.nvidia.com/v1beta1`): time-slicing, or MPS
  with a per-client pinned-memory limit from the model's budget.

Claims are namespaced and a pod can use only its own namespace's claims, while
the planner shares GPUs across namespaces: so a GPU holds several claims, and
the device must allow several allocations (`allowMultipleAllocations`,
DRAConsumableCapacity, beta and on by default in Kubernetes 1.36). One claim
per selection rather than per (namespace, GPU): the scheduler writes every pod
of a shared claim into its `reservedFor`, and pods scheduled together then
conflict on it and wait out backoffs (`bench/reconcile.py` measured 1,000
selections scheduled in 198 s instead of 25 s). A claim asks for `memory: 0`:
the planner's accounting is the memory guard, as with time-slicing (MPS adds
the per-client limit).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fovea.domain import constants as c
from fovea.domain.units import parse_quantity

DRIVER = "gpu.nvidia.com"
DEVICE_CLASS = "gpu.nvidia.com"
API_VERSION = "resource.k8s.io/v1"
CONFIG_API_VERSION = "resource.nvidia.com/v1beta1"
# The claim's one request, and the name under which a pod lists the claim.
REQUEST = "gpu"
POD_CLAIM = "gpu"
COMPONENT_CLAIM = "gpu-claim"
# Attributes of a device (unqualified names belong to the driver's domain).
ATTR_UUID = "uuid"
ATTR_INDEX = "index"
ATTR_PRODUCT = "productName"
ATTR_SIMULATED = "simulated"  # the local cluster's simulated GPUs only
CAPACITY_MEMORY = "memory"
CLAIM_SELECTOR = f"{c.LABEL_COMPONENT}={COMPONENT_CLAIM},{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
_DEVICE_NAME = re.compile(r"^gpu-(\d+)$")
MAX_NAME = 63


class DraSharing(StrEnum):
    """How the NVIDIA driver shares one GPU between the pods of a claim."""

    TIME_SLICING = "TimeSlicing"
    MPS = "MPS"


@dataclass(frozen=True, slots=True)
class Device:
    """One GPU a ResourceSlice publishes."""

    driver: str
    pool: str
    name: str
    node: str
    uuid: str
    index: int | None
    product: str | None = None
    memory_bytes: int | None = None
    simulated: bool = False
    # `allowMultipleAllocations`: several claims may hold it (required to share a GPU).
    shareable: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """The claim a selection's model pods on one GPU reference (one per selection, GPU and
    config)."""

    namespace: str
    name: str
    device: Device
    sharing: DraSharing
    limit_mib: int | None  # MPS: the per-client pinned-memory limit

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class AllocatedDevice:
    """What the scheduler allocated to a claim, as its `status.allocation` says."""

    driver: str
    pool: str
    device: str
    claim: str
    uuid: str | None = None  # from the device's ResourceSlice
    index: int | None = None


# --- ResourceSlices ---------------------------------------------------------------------


def devices_from_slices(slices: Iterable[Mapping[str, Any]]) -> list[Device]:
    """Every GPU device of driver `gpu.nvidia.com` with a `uuid`, sorted by (node, index)."""
    out: list[Device] = []
    for obj in slices:
        spec = obj.get("spec") or {}
        if spec.get("driver") != DRIVER:
            continue
        pool = str((spec.get("pool") or {}).get("name") or "")
        node = str(spec.get("nodeName") or "")
        for dev in spec.get("devices") or []:
            attrs = dev.get("attributes") or {}
            uuid = _attr(attrs, ATTR_UUID)
            if not isinstance(uuid, str) or not uuid:
                continue
            name = str(dev.get("name") or "")
            index = _attr(attrs, ATTR_INDEX)
            if not isinstance(index, int):
                match = _DEVICE_NAME.match(name)
                index = int(match[1]) if match else None
            product = _attr(attrs, ATTR_PRODUCT)
            memory = ((dev.get("capacity") or {}).get(CAPACITY_MEMORY) or {}).get("value")
            out.append(
                Device(
                    driver=DRIVER,
                    pool=pool,
                    name=name,
                    node=node,
                    uuid=uuid,
                    index=index,
                    product=product if isinstance(product, str) else None,
                    memory_bytes=int(parse_quantity(memory)) if memory is not None else None,
                    simulated=_attr(attrs, ATTR_SIMULATED) is True,
                    shareable=dev.get("allowMultipleAllocations") is True,
                )
            )
    return sorted(out, key=lambda d: (d.node, -1 if d.index is None else d.index, d.name))


def dra_available(device_classes: Iterable[Mapping[str, Any]], devices: Sequence[Device]) -> bool:
    """The cluster speaks DRA for GPUs the way the planner shares them: DeviceClass
    `gpu.nvidia.com`, at least one device, and every device allows several allocations.

    A device without `allowMultipleAllocations` (the NVIDIA driver's own slices today)
    can be held by one claim only, so it could serve one model pod at a time and the
    planner's packing would not hold: `auto` then stays with the device plugin
    (`dra_unavailable_reason` says why).
    """
    return dra_unavailable_reason(device_classes, devices) is None


def dra_unavailable_reason(
    device_classes: Iterable[Mapping[str, Any]], devices: Sequence[Device]
) -> str | None:
    """Why `auto` does not choose dra, or None when it does."""
    named = {str((dc.get("metadata") or {}).get("name")) for dc in device_classes}
    if DEVICE_CLASS not in named:
        return f"no DeviceClass {DEVICE_CLASS}"
    if not devices:
        return f"no ResourceSlice publishes a {DRIVER} device"
    exclusive = [f"{d.node}/{d.name}" for d in devices if not d.shareable]
    if exclusive:
        return (
            f"{len(exclusive)} device(s) without allowMultipleAllocations "
            f"(one claim each: no GPU sharing), e.g. {exclusive[0]}"
        )
    return None


def device_at(devices: Iterable[Device], node: str, index: int) -> Device | None:
    """The device of GPU `index` on `node` (the planner's GPU), or None."""
    for device in devices:
        if device.node == node and device.index == index:
            return device
    return None


def device_attributes(
    uuid: str, index: int, product: str, simulated: bool
) -> dict[str, dict[str, Any]]:
    """A GPU device's attributes as a ResourceSlice carries them."""
    attrs: dict[str, dict[str, Any]] = {
        "type": {"string": "gpu"},
        ATTR_UUID: {"string": uuid},
        ATTR_INDEX: {"int": index},
        ATTR_PRODUCT: {"string": product},
    }
    if simulated:
        attrs[ATTR_SIMULATED] = {"bool": True}
    return attrs


# --- claims -----------------------------------------------------------------------------


def claim_for(
    namespace: str, selection: str, device: Device, sharing: DraSharing, vram_gib: float
) -> Claim:
    """The claim of `selection`'s pods on `device` (MPS: limited to `vram_gib`)."""
    limit = max(1, round(vram_gib * 1024)) if sharing == DraSharing.MPS else None
    parts = [selection, device.driver, device.pool, device.name, device.uuid, str(sharing), limit]
    digest = _digest(parts)
    stem = re.sub(r"[^a-z0-9-]", "-", f"{selection}-gpu-{device.node}-{device.index}".lower())
    name = f"{stem.strip('-')[: MAX_NAME - 9].rstrip('-')}-{digest[:8]}"
    return Claim(namespace, name, device, sharing, limit)


def gpu_config(sharing: DraSharing, limit_mib: int | None) -> dict[str, Any]:
    """The driver's `GpuConfig` parameters for the claim's sharing."""
    if sharing == DraSharing.MPS:
        mps: dict[str, Any] = {}
        if limit_mib is not None:
            mps["defaultPinnedDeviceMemoryLimit"] = f"{limit_mib}Mi"
        return {
            "apiVersion": CONFIG_API_VERSION,
            "kind": "GpuConfig",
            "sharing": {"strategy": "MPS", "mpsConfig": mps},
        }
    return {
        "apiVersion": CONFIG_API_VERSION,
        "kind": "GpuConfig",
        "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Default"}},
    }


def selector(uuid: str) -> str:
    """The CEL expression that selects exactly the GPU `uuid`."""
    return f'device.attributes["{DRIVER}"].{ATTR_UUID} == {json.dumps(uuid)}'


def claim_body(claim: Claim, owners: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The ResourceClaim object; `owners`: (name, uid) of the selections whose pods use it."""
    device = claim.device
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceClaim",
        "metadata": {
            "name": claim.name,
            "namespace": claim.namespace,
            "labels": {
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_COMPONENT: COMPONENT_CLAIM,
            },
            "annotations": {
                c.ANNOTATION_PLANNED_NODE: device.node,
                c.ANNOTATION_PLANNED_GPU: "" if device.index is None else str(device.index),
            },
            "ownerReferences": owner_references(owners),
        },
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": REQUEST,
                        "exactly": {
                            "deviceClassName": DEVICE_CLASS,
                            "selectors": [{"cel": {"expression": selector(device.uuid)}}],
                            "capacity": {"requests": {CAPACITY_MEMORY: "0"}},
                        },
                    }
                ],
                "config": [
                    {
                        "requests": [REQUEST],
                        "opaque": {
                            "driver": DRIVER,
                            "parameters": gpu_config(claim.sharing, claim.limit_mib),
                        },
                    }
                ],
            }
        },
    }


def owner_references(owners: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The selections using a claim, as its owners: GC removes it once all of them are gone."""
    return [
        {"apiVersion": c.API_VERSION, "kind": c.SELECTION_KIND, "name": name, "uid": uid}
        for name, uid in sorted(set(owners), key=lambda o: (o[1], o[0]))
    ]


def pod_claims(claim_name: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A pod's `spec.resourceClaims` and its container's `resources.claims` for one claim."""
    return [{"name": POD_CLAIM, "resourceClaimName": claim_name}], [{"name": POD_CLAIM}]


def claim_names(pod: Mapping[str, Any]) -> list[str]:
    """The claims (by name) a pod references directly."""
    refs = (pod.get("spec") or {}).get("resourceClaims") or []
    return [str(r["resourceClaimName"]) for r in refs if r.get("resourceClaimName")]


# --- allocations ------------------------------------------------------------------------


def allocated(claim: Mapping[str, Any], devices: Iterable[Device]) -> AllocatedDevice | None:
    """The GPU the scheduler allocated to `claim` (uuid and index from its slice), or None."""
    allocation = (claim.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    for result in results:
        if result.get("driver") != DRIVER:
            continue
        pool, name = str(result.get("pool") or ""), str(result.get("device") or "")
        found = next((d for d in devices if (d.pool, d.name) == (pool, name)), None)
        return AllocatedDevice(
            driver=DRIVER,
            pool=pool,
            device=name,
            claim=str((claim.get("metadata") or {}).get("name") or ""),
            uuid=found.uuid if found else None,
            index=found.index if found else None,
        )
    return None


def reserved_for(claim: Mapping[str, Any], pod_uid: str) -> bool:
    """Whether the scheduler reserved `claim` for the pod `pod_uid` (the kubelet's check)."""
    refs = (claim.get("status") or {}).get("reservedFor") or []
    return any(r.get("resource") == "pods" and r.get("uid") == pod_uid for r in refs)


# The scheduler's words for a pod whose shared claim another pod's scheduling is allocating.
_ALLOCATING = "is in the process of being allocated"


def waits_for_allocation(message: str) -> bool:
    """Whether the scheduler's Unschedulable message only says a claim is being allocated
    (transient: the pod is tried again once it is), not that no node fits."""
    return _ALLOCATING in message


def _attr(attrs: Mapping[str, Any], name: str) -> object:
    value = attrs.get(name)
    if value is None:
        value = attrs.get(f"{DRIVER}/{name}")
    if not isinstance(value, Mapping):
        return None
    for kind in ("string", "int", "bool", "version"):
        if kind in value:
            return value[kind]
    return None


def _digest(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
