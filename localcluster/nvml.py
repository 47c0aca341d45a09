"""The machine's real NVIDIA GPUs, found through NVML (nvidia-ml-py), grouped per node.

Without the library or a driver this finds nothing: the cluster then falls
back to simulated GPUs, and says so on every simulated node and pod.
"""

from __future__ import annotations

import re
from collections import defaultdict

from fovea.localcluster.nodes import GpuSet


def _label_value(name: str) -> str:
    """GPU feature discovery style product label: spaces become dashes."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name.strip())[:63].strip("-_.") or "NVIDIA-GPU"


def detect_gpus() -> list[GpuSet]:
    """One GpuSet per kind of real GPU (same product and memory), or [] when none."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        uuids: dict[int, str] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode()
            memory_mib = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024)
            groups[(_label_value(name), memory_mib)].append(index)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuids[index] = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
    except pynvml.NVMLError:
        return []
    finally:
        pynvml.nvmlShutdown()
    return [
        GpuSet(
            count=len(indices),
            memory_mib=memory_mib,
            product=product,
            simulated=False,
            device_indices=tuple(indices),
            uuids=tuple(uuids[i] for i in indices),
        )
        for (product, memory_mib), indices in sorted(groups.items(), key=lambda kv: kv[1][0])
    ]
