"""Device check: does the model pod's measured GPU memory match what NVML charges the process?

Loads models of different sizes on cuda:0 through the model pod's own
adapters and measurement code (random weights built from configs: nothing is
downloaded), each in a fresh child process so that NVML's per-process figure
belongs to that one model. The parent, an independent observer, reads NVML
for the child's PID while the model is loaded and warm, and prints per model:
the measured memory the pod would report, NVML's figure, the error ratio, and
PASS/FAIL at 5%. It also prints what the fallbacks would have reported (the
device's used-memory growth, and torch's reserved memory alone, which misses
the CUDA context).

    python bench/gpu_memory_check.py                  # on a GPU machine
    python bench/gpu_memory_check.py --device cpu --models mlp-small   # the flow, on a CPU

Needs only torch, transformers, psutil and nvidia-ml-py: the repository is put
on the import path by hand if fovea-models is not installed. Every child has a
timeout; the script never waits forever and prints what it has.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
TOLERANCE = 0.05
CHILD_TIMEOUT_SECONDS = 300.0
READY_MARK = "MODEL-READY "


def bootstrap_imports() -> None:
    """Make `fovea.model_pod` importable from the repository without installing it.

    The folders map into the `fovea` namespace (model_pod/ is fovea.model_pod):
    adding the repository root to the `fovea` package's path does the same.
    """
    try:
        import fovea.model_pod
    except ImportError:
        sys.path.insert(0, str(REPO))
        import fovea

        fovea.__path__.append(str(REPO))


# Llama-shaped configs (AutoModel: no LM head), fp32: about 0.5 GiB and 4 GiB of weights.
LLAMA_SMALL = {
    "model_type": "llama",
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 8,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
}
LLAMA_LARGE = {
    **LLAMA_SMALL,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 20,
}


@dataclass(frozen=True)
class ModelCase:
    name: str
    framework: str
    model_id: str
    architecture: str  # a name, or "config:<json>" written to a config.json for the child


CASES = {
    "llama-0.5g": ModelCase(
        "llama-0.5g", "transformers", "check/llama-0.5g", "config:" + json.dumps(LLAMA_SMALL)
    ),
    "llama-4g": ModelCase(
        "llama-4g", "transformers", "check/llama-4g", "config:" + json.dumps(LLAMA_LARGE)
    ),
    "mlp-1g": ModelCase("mlp-1g", "pytorch", "mlp:16384,16384", "mlp:16384,16384"),
    "mlp-small": ModelCase("mlp-small", "pytorch", "mlp-tiny", "mlp-tiny"),
}
DEFAULT_CASES = ["llama-0.5g", "llama-4g", "mlp-1g"]


# --- pure parts (tested on the CPU) ------------------------------------------------------


def error_ratio(measured: float, observed: float) -> float:
    """|measured - observed| / observed (infinite when nothing was observed)."""
    if observed <= 0:
        return float("inf")
    return abs(measured - observed) / observed


def verdict(measured: float | None, observed: float | None) -> str:
    """PASS within 5% of NVML's figure, FAIL beyond it, NO-NVML without a figure to check."""
    if measured is None or observed is None:
        return "NO-NVML"
    return "PASS" if error_ratio(measured, observed) <= TOLERANCE else "FAIL"


def format_row(name: str, child: dict[str, Any], observed: int | None, observer: str) -> str:
    """One model's line of the report."""
    measured = child.get("measured_bytes")
    breakdown = child.get("breakdown", {})
    parts = [
        f"{name:<11}",
        f"measured {measured / GIB:7.3f} GiB ({child.get('method')})" if measured else "measured -",
        f"NVML {observed / GIB:7.3f} GiB ({observer})" if observed else f"NVML - ({observer})",
    ]
    if measured and observed:
        parts.append(f"error {error_ratio(measured, observed) * 100:5.2f}%")
    parts.append(verdict(measured, observed))
    if observed:
        reserved = breakdown.get("reservedGb", 0.0) * GIB
        delta = breakdown.get("deviceUsedDeltaGb")
        parts.append(f"| reserved-only {error_ratio(reserved, observed) * 100:5.1f}% off")
        if delta is not None:
            parts.append(f"device-delta {error_ratio(delta * GIB, observed) * 100:5.2f}% off")
    parts.append(f"| params {breakdown.get('parametersGb', 0.0):.3f} GiB")
    parts.append(f"context {breakdown.get('cudaContextGb', 0.0):.3f} GiB")
    parts.append(f"load {child.get('load_seconds', 0.0):.1f}s")
    return "  ".join(parts)


# --- the child: one model, loaded exactly as the model pod loads it ---------------------------


def run_child(case: ModelCase, device: str, workdir: Path) -> int:
    bootstrap_imports()
    from fovea.model_pod import measure
    from fovea.model_pod.adapters import adapter_for
    from fovea.model_pod.adapters.base import ModelSpec

    architecture = case.architecture
    if architecture.startswith("config:"):
        config_dir = workdir / case.name
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "config.json").write_text(architecture[len("config:") :])
        architecture = str(config_dir)
    spec = ModelSpec(
        task="device_check",
        model_id=case.model_id,
        architecture=architecture,
        allow_random_weights=True,
        batch_size=1,
    )
    adapter = adapter_for(case.framework, spec)
    base = measure.baseline(device)
    started = time.perf_counter()
    loaded = adapter.load(device)
    load_seconds = time.perf_counter() - started
    adapter.warmup(spec.batch_size)
    reading = measure.module_reading(device, adapter.module, base)
    result = {
        "pid": os.getpid(),
        "device": loaded.device,
        "random_weights": loaded.random_weights,
        "source": loaded.source,
        "measured_bytes": reading.measured_bytes,
        "method": reading.method,
        "breakdown": reading.breakdown,
        "load_seconds": load_seconds,
    }
    print(READY_MARK + json.dumps(result), flush=True)
    # Stay loaded until the parent has read NVML (or a minute passes).
    ready, _, _ = select.select([sys.stdin], [], [], 60)
    if ready:
        sys.stdin.readline()
    adapter.close()
    return 0


# --- the parent: an independent observer ------------------------------------------------------


def nvml_observe(pid: int, index: int) -> tuple[int | None, int | None]:
    """NVML's per-process bytes for `pid` and the device's used bytes, or None where unavailable."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        print(f"  NVML unavailable: {exc}", flush=True)
        return None, None
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        process_bytes = None
        for query in (
            pynvml.nvmlDeviceGetComputeRunningProcesses,
            pynvml.nvmlDeviceGetGraphicsRunningProcesses,
        ):
            try:
                for process in query(handle):
                    if process.pid == pid and process.usedGpuMemory is not None:
                        process_bytes = (process_bytes or 0) + int(process.usedGpuMemory)
            except pynvml.NVMLError:
                continue
        return process_bytes, used
    finally:
        pynvml.nvmlShutdown()


def check_case(case: ModelCase, device: str, workdir: Path) -> tuple[str, bool]:
    """Run one model in a child, observe it, and return its report line and whether it passed."""
    index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
    _, used_before = nvml_observe(-1, index) if device.startswith("cuda") else (None, None)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        case.name,
        "--device",
        device,
        "--workdir",
        str(workdir),
    ]
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert child.stdout is not None and child.stdin is not None
    deadline = time.monotonic() + CHILD_TIMEOUT_SECONDS
    result: dict[str, Any] | None = None
    tail: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], 1.0)
        if not ready:
            if child.poll() is not None:
                break
            continue
        line = child.stdout.readline()
        if not line:
            break
        if line.startswith(READY_MARK):
            result = json.loads(line[len(READY_MARK) :])
            break
        tail = [*tail, line.rstrip()][-15:]
    if result is None:
        child.kill()
        child.wait()
        reason = "timed out" if time.monotonic() >= deadline else f"exited {child.returncode}"
        return f"{case.name:<11}  ERROR: child {reason}:\n    " + "\n    ".join(tail), False
    observed: int | None = None
    observer = "no GPU"
    if device.startswith("cuda"):
        process_bytes, used_now = nvml_observe(result["pid"], index)
        if process_bytes is not None:
            observed, observer = process_bytes, "per-process"
        elif used_now is not None and used_before is not None:
            observed, observer = used_now - used_before, "device used growth"
        else:
            observer = "unavailable"
    child.stdin.write("done\n")
    child.stdin.flush()
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
    line = format_row(case.name, result, observed, observer)
    passed = verdict(result.get("measured_bytes"), observed) == "PASS"
    return line, passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--models", nargs="+", default=DEFAULT_CASES, choices=sorted(CASES))
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(CASES[args.child], args.device, args.workdir)

    print(
        f"gpu memory check on {args.device}: {', '.join(args.models)} (tolerance {TOLERANCE:.0%})",
        flush=True,
    )
    try:  # NVML, not torch: the observer must not hold a CUDA context of its own
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
        driver = pynvml.nvmlSystemGetDriverVersion()
        print(f"  {name}, {total / GIB:.1f} GiB, driver {driver}", flush=True)
        pynvml.nvmlShutdown()
    except Exception as exc:  # report and go on: the children say what fails
        print(f"  NVML: {exc}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="fovea-gpu-check-") as workdir:
        for name in args.models:
            started = time.monotonic()
            line, passed = check_case(CASES[name], args.device, Path(workdir))
            print(line + f"  ({time.monotonic() - started:.0f}s)", flush=True)
            results.append(passed)
    print(
        f"overall: {'PASS' if all(results) else 'FAIL'} ({sum(results)}/{len(results)})", flush=True
    )
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
