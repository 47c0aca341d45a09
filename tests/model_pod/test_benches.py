"""The benchmark and the device check run their CPU parts here (the GPU part runs on a GPU)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_model_load_bench_runs_and_compares_with_a_raw_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load("model_load")
    assert bench.width_for(100) == 5000
    code = bench.main(["--sizes", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "warm page cache" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("4MB"))
    # How fast this machine is varies; what the bench says of its own figures does not:
    # two positive rates, their ratio, its verdict, and the exit code that follows.
    size, raw_rate, gbs, load_rate, gbs2, ratio, said = row.split()[:7]
    assert size == "4MB" and gbs == gbs2 == "GB/s"
    raw, loaded, half = float(raw_rate), float(load_rate), 0.005  # each printed to 0.01
    assert raw > half and loaded > 0
    assert (loaded - half) / (raw + half) - half <= float(ratio)
    assert float(ratio) <= (loaded + half) / (raw - half) + half
    assert said == bench.verdict(float(ratio))
    assert out.splitlines()[-1] == f"overall: {said}"
    assert code == (0 if said == "PASS" else 1)


def test_model_load_verdict_is_the_target_ratio() -> None:
    bench = load("model_load")
    assert bench.TARGET_RATIO == 0.8
    assert bench.verdict(0.8) == bench.verdict(1.5) == "PASS"
    assert bench.verdict(0.79) == bench.verdict(0.0) == "FAIL"


def test_gpu_check_verdicts() -> None:
    check = load("gpu_memory_check")
    assert check.error_ratio(105, 100) == pytest.approx(0.05)
    assert check.verdict(104, 100) == "PASS"
    assert check.verdict(94, 100) == "FAIL"
    assert check.verdict(100, None) == "NO-NVML"
    row = check.format_row(
        "m",
        {
            "measured_bytes": 2 * 1024**3,
            "method": "nvml-process",
            "breakdown": {"reservedGb": 1.5, "deviceUsedDeltaGb": 2.0},
        },
        2 * 1024**3,
        "per-process",
    )
    assert "error  0.00%" in row and "PASS" in row and "reserved-only  25.0% off" in row


def test_gpu_check_flow_on_the_cpu() -> None:
    """The whole parent/child flow, on the CPU: a child loads, reports, and is observed."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "gpu_memory_check.py"),
            "--device",
            "cpu",
            "--models",
            "mlp-small",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "mlp-small" in result.stdout, result.stdout + result.stderr
    assert "measured   0.000 GiB (parameters+buffers)" in result.stdout
    assert "NO-NVML" in result.stdout  # no GPU here: nothing to compare, and it says so
    assert result.returncode == 1
