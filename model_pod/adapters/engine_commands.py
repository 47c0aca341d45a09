"""Command lines and settings of the OpenAI-compatible engine servers (pure).

sglang and vLLM each size their KV cache from a fraction of the GPU's memory.
The operator planned `declared_vram_gb` for this model on this GPU, so the
fraction is that share of the GPU's total: the engine then keeps to the
budget the placement was computed with instead of taking 90% of the card.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fovea.domain.units import GIB, format_size

MIN_FRACTION = 0.05
MAX_FRACTION = 0.95
HEALTH_PATH = "/health"


@dataclass(frozen=True)
class EngineLaunch:
    """What one engine server is started with."""

    model: str
    port: int
    host: str = "127.0.0.1"
    memory_fraction: float | None = None
    random_weights: bool = False  # --load-format dummy: random weights, the engine's own way


def memory_fraction(declared_vram_gb: float | None, total_bytes: int) -> float:
    """The share of the GPU the engine may take: planned VRAM / GPU total.

    Rounded down to 3 decimals (never above the plan) and kept within
    [0.05, 0.95]; a plan larger than the GPU is an error, not a clamp.
    """
    if declared_vram_gb is None or declared_vram_gb <= 0:
        raise ValueError("an engine needs the planned VRAM (FOVEA_DECLARED_VRAM_GB) to size itself")
    if total_bytes <= 0:
        raise ValueError("the GPU's total memory is unknown")
    fraction = declared_vram_gb * GIB / total_bytes
    if fraction > 1:
        raise ValueError(
            f"planned {format_size(declared_vram_gb)} is more than the GPU's "
            f"{format_size(total_bytes / GIB)}"
        )
    return min(MAX_FRACTION, max(MIN_FRACTION, int(fraction * 1000) / 1000))


def sglang_command(launch: EngineLaunch, python: str = sys.executable) -> list[str]:
    """`python -m sglang.launch_server --model-path M ... --mem-fraction-static F`."""
    command = [
        python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        launch.model,
        "--host",
        launch.host,
        "--port",
        str(launch.port),
    ]
    if launch.memory_fraction is not None:
        command += ["--mem-fraction-static", f"{launch.memory_fraction:g}"]
    if launch.random_weights:
        command += ["--load-format", "dummy"]
    return command


def vllm_command(launch: EngineLaunch, executable: str = "vllm") -> list[str]:
    """`vllm serve M --host H --port P --gpu-memory-utilization F`."""
    command = [executable, "serve", launch.model, "--host", launch.host, "--port", str(launch.port)]
    if launch.memory_fraction is not None:
        command += ["--gpu-memory-utilization", f"{launch.memory_fraction:g}"]
    if launch.random_weights:
        command += ["--load-format", "dummy"]
    return command


def child_visible_devices(cuda_index: int, parent_visible: str | None) -> str:
    """CUDA_VISIBLE_DEVICES for the engine, so that it sees only the planned GPU."""
    if not parent_visible:
        return str(cuda_index)
    entries = [entry.strip() for entry in parent_visible.split(",") if entry.strip()]
    if cuda_index >= len(entries):
        raise ValueError(f"cuda:{cuda_index} is not among CUDA_VISIBLE_DEVICES={parent_visible!r}")
    return entries[cuda_index]


@dataclass(frozen=True)
class Engine:
    """An engine kind: its name, how to start it, and where it answers health checks."""

    name: str
    command: Callable[[EngineLaunch], Sequence[str]]
    requires_gpu: bool = True
    health_path: str = HEALTH_PATH
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here, if it cannot


def _sglang_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("sglang") is None:
        return "sglang is not installed in this image"
    return None


def _vllm_missing() -> str | None:
    import shutil

    if shutil.which("vllm") is None:
        return "vllm is not installed in this image (no `vllm` on PATH)"
    return None


SGLANG = Engine("sglang", sglang_command, missing=_sglang_missing)
VLLM = Engine("vllm", vllm_command, missing=_vllm_missing)
