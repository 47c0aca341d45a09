"""What a loaded model really takes, in bytes, and how that was measured.

On the CPU the footprint is the model's parameter and buffer bytes (RSS growth
is reported beside it: it also counts allocator slack and libraries loaded on
first use). On CUDA the truth is what the driver charges the process: NVML's
per-process usage when NVML can see the process, else the growth of the
device's used memory since before this process touched CUDA, else torch's
reserved memory (which misses the CUDA context, and says so). An engine in a
child process is measured the same way over its whole process tree.

Only torch, psutil and pynvml (nvidia-ml-py) are imported: this module also
runs in the GPU memory check.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

GIB = 1024**3

METHOD_PARAMETERS = "parameters+buffers"
METHOD_NVML_PROCESS = "nvml-process"
METHOD_DEVICE_DELTA = "device-used-delta"
METHOD_TORCH_RESERVED = "torch-reserved"
METHOD_PROCESS_RSS = "process-rss"


@dataclass(frozen=True)
class MemoryReading:
    """One measurement: the figure to report, how it was obtained, and its parts in GiB."""

    measured_bytes: int
    method: str
    breakdown: dict[str, float] = field(default_factory=dict)

    @property
    def measured_gib(self) -> float:
        return self.measured_bytes / GIB


@dataclass(frozen=True)
class Baseline:
    """Taken before loading: this process's RSS and, on CUDA, the device's used bytes."""

    rss_bytes: int
    device_used_bytes: int | None = None


def gib(value: int | float) -> float:
    """Bytes to GiB, rounded to about a KiB (tiny test models stay measurable)."""
    return round(value / GIB, 6)


def module_bytes(module: Any) -> tuple[int, int]:
    """Parameter and buffer bytes of a torch module, each tensor counted once.

    Tied weights (an embedding shared with an output layer) are one tensor with
    two names; counting by data pointer keeps them from being counted twice.
    """
    seen: set[tuple[str, int]] = set()

    def total(tensors: Iterable[Any]) -> int:
        size = 0
        for tensor in tensors:
            key = (str(tensor.device), tensor.data_ptr())
            if key in seen or tensor.numel() == 0:
                continue
            seen.add(key)
            size += tensor.numel() * tensor.element_size()
        return size

    params = total(module.parameters())
    buffers = total(module.buffers())
    return params, buffers


def rss_bytes(pids: Iterable[int] | None = None) -> int:
    """Resident memory of this process (or of the given processes)."""
    if pids is None:
        return int(psutil.Process().memory_info().rss)
    size = 0
    for pid in pids:
        try:
            size += int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            continue
    return size


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (engines spawn workers that hold GPU memory)."""
    try:
        parent = psutil.Process(pid)
        return [pid, *(child.pid for child in parent.children(recursive=True))]
    except psutil.Error:
        return [pid]


def cpu_reading(module: Any, baseline: Baseline) -> MemoryReading:
    """The footprint of a model in this process's CPU memory."""
    params, buffers = module_bytes(module)
    growth = max(0, rss_bytes() - baseline.rss_bytes)
    return MemoryReading(
        measured_bytes=params + buffers,
        method=METHOD_PARAMETERS,
        breakdown={
            "parametersGb": gib(params),
            "buffersGb": gib(buffers),
            "rssGrowthGb": gib(growth),
        },
    )


# --- NVML --------------------------------------------------------------------


def nvml_target(cuda_index: int, visible_devices: str | None) -> int | str:
    """Which NVML device `cuda:<cuda_index>` is: an NVML index, or a UUID.

    CUDA numbers devices after `CUDA_VISIBLE_DEVICES` filters them; NVML does
    not. With `CUDA_VISIBLE_DEVICES=3,1`, `cuda:0` is NVML index 3 and
    `cuda:1` is NVML index 1; entries may also be GPU UUIDs.
    """
    if not visible_devices:
        return cuda_index
    entries = [entry.strip() for entry in visible_devices.split(",") if entry.strip()]
    if cuda_index >= len(entries):
        raise ValueError(f"cuda:{cuda_index} is not among CUDA_VISIBLE_DEVICES={visible_devices!r}")
    entry = entries[cuda_index]
    return int(entry) if entry.isdigit() else entry


@contextmanager
def nvml() -> Iterator[Any]:
    """pynvml, initialised for the duration of the block (raises if NVML is missing)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def _handle(pynvml: Any, cuda_index: int) -> Any:
    from fovea.model_pod.settings import get_settings

    target = nvml_target(cuda_index, get_settings().cuda_visible_devices)
    if isinstance(target, int):
        return pynvml.nvmlDeviceGetHandleByIndex(target)
    return pynvml.nvmlDeviceGetHandleByUUID(target)


def nvml_process_bytes(pynvml: Any, handle: Any, pids: Iterable[int]) -> int | None:
    """GPU memory NVML charges to `pids` on one device, or None if it lists none of them.

    None also when the driver hides per-process figures (usedGpuMemory None),
    or when the process sees other PIDs than NVML does (a container's PID
    namespace): the caller then falls back to the device's used memory.
    """
    wanted = set(pids)
    found = False
    used = 0
    for query in (
        pynvml.nvmlDeviceGetComputeRunningProcesses,
        pynvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        try:
            processes = query(handle)
        except pynvml.NVMLError:
            continue
        for process in processes:
            if process.pid in wanted and process.usedGpuMemory is not None:
                found = True
                used += int(process.usedGpuMemory)
    return used if found else None


def device_used_bytes(cuda_index: int) -> int | None:
    """Used memory of the whole device by NVML, or None where NVML is unavailable."""
    try:
        with nvml() as pynvml:
            info = pynvml.nvmlDeviceGetMemoryInfo(_handle(pynvml, cuda_index))
            return int(info.used)
    except Exception:  # no NVML library or no driver: the caller reports without it
        return None


def device_total_bytes(cuda_index: int) -> int | None:
    """Total memory of the device by NVML, or None where NVML is unavailable."""
    try:
        with nvml() as pynvml:
            info = pynvml.nvmlDeviceGetMemoryInfo(_handle(pynvml, cuda_index))
            return int(info.total)
    except Exception:  # no NVML library or no driver
        return None


def baseline(device: str) -> Baseline:
    """Take the baseline before loading (before this process creates a CUDA context)."""
    used = device_used_bytes(cuda_index(device)) if device.startswith("cuda") else None
    return Baseline(rss_bytes=rss_bytes(), device_used_bytes=used)


def cuda_index(device: str) -> int:
    """The index of "cuda:N" ("cuda" alone is 0)."""
    _, _, index = device.partition(":")
    return int(index) if index else 0


def choose_cuda_figure(
    process_bytes: int | None, device_delta: int | None, reserved: int
) -> tuple[int, str]:
    """The figure to report on CUDA and its method, best source first."""
    if process_bytes is not None:
        return process_bytes, METHOD_NVML_PROCESS
    if device_delta is not None and device_delta > 0:
        return device_delta, METHOD_DEVICE_DELTA
    return reserved, METHOD_TORCH_RESERVED


def cuda_reading(device: str, pids: list[int], base: Baseline, in_process: bool) -> MemoryReading:
    """Measure a model on CUDA: torch's view (in-process models) and NVML's view.

    `pids` are the processes holding the model (this one, or an engine's tree).
    The CUDA context is what NVML charges beyond torch's reserved memory.
    """
    index = cuda_index(device)
    allocated = reserved = 0
    if in_process:
        import torch

        torch.cuda.synchronize(index)
        allocated = int(torch.cuda.memory_allocated(index))
        reserved = int(torch.cuda.memory_reserved(index))
    process_bytes: int | None = None
    device_used: int | None = None
    try:
        with nvml() as pynvml:
            handle = _handle(pynvml, index)
            process_bytes = nvml_process_bytes(pynvml, handle, pids)
            device_used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:  # no NVML: torch's figures are all there is, and the method says so
        pass
    delta = None
    if device_used is not None and base.device_used_bytes is not None:
        delta = device_used - base.device_used_bytes
    measured, method = choose_cuda_figure(process_bytes, delta, reserved)
    breakdown = {"allocatedGb": gib(allocated), "reservedGb": gib(reserved)}
    if process_bytes is not None:
        breakdown["nvmlProcessGb"] = gib(process_bytes)
    if delta is not None:
        breakdown["deviceUsedDeltaGb"] = gib(delta)
    if in_process and method != METHOD_TORCH_RESERVED:
        breakdown["cudaContextGb"] = gib(max(0, measured - reserved))
    return MemoryReading(measured_bytes=measured, method=method, breakdown=breakdown)


def module_reading(device: str, module: Any, base: Baseline) -> MemoryReading:
    """Measure an in-process torch model on its device, with its parameter bytes beside."""
    if not device.startswith("cuda"):
        return cpu_reading(module, base)
    reading = cuda_reading(device, [os.getpid()], base, in_process=True)
    params, buffers = module_bytes(module)
    breakdown = {
        **reading.breakdown,
        "parametersGb": gib(params),
        "buffersGb": gib(buffers),
    }
    return MemoryReading(reading.measured_bytes, reading.method, breakdown)


def engine_reading(device: str, pid: int, base: Baseline) -> MemoryReading:
    """Measure an engine's server: its whole process tree, on its device."""
    pids = process_tree(pid)
    if device.startswith("cuda"):
        return cuda_reading(device, pids, base, in_process=False)
    resident = rss_bytes(pids)
    return MemoryReading(resident, METHOD_PROCESS_RSS, {"processRssGb": gib(resident)})
