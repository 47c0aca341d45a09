"""The CPU fallback that comes back, with the real operator on the local cluster."""

from __future__ import annotations

from typing import Any

import pytest

from kube_testing import Kube, eventually
from kube_testing import tiny_option as option

pytestmark = pytest.mark.integration

# Local cluster default: fovea-gpu-0 with 2x24 GiB, fovea-gpu-1 with 1x80 GiB,
# threshold 0.8 -> room for 19.2, 19.2 and 64 GiB.


def degraded(kube: Kube, task: str) -> dict[str, Any] | None:
    conds = kube.status(task).get("conditions") or []
    return next((c for c in conds if c["type"] == "Degraded"), None)


def test_a_model_on_the_cpu_is_degraded_and_moves_back_once_memory_frees(
    kube: Kube, operator: None
) -> None:
    tasks = {
        "a": {"m": option(19.0)},
        "b": {"m": option(19.0)},
        "c": {"m": option(60.0)},
        "extra": {"m": option(19.0, cpuMemoryGb=1.0)},
    }
    kube.apply_catalog(
        {
            "tasks": {t: {"options": o} for t, o in tasks.items()},
            "inference": {"offloadThreshold": 0.8, "warmupOnStartup": True},
        }
    )
    for task in ("c", "a", "b"):
        kube.select(task, "m", priority=200)
    assert eventually(lambda: len(kube.model_pods()) == 3 or None, 60)
    kube.select("extra", "m", priority=100)

    cond = eventually(
        lambda: c if (c := degraded(kube, "extra")) and c["status"] == "True" else None
    )
    assert cond is not None, kube.status("extra")
    assert cond["reason"] == "CPUFallback" and "wants fovea-gpu-0 GPU" in cond["message"]
    cpu_pod = kube.status("extra")["pod"]

    kube.delete_selection("a")  # 19 GiB free on fovea-gpu-0 once its pod is gone

    def back() -> dict[str, Any] | None:
        status = kube.status("extra")
        c = degraded(kube, "extra")
        on_gpu = status.get("plannedGpuIndex") is not None and status.get("pod") != cpu_pod
        return status if on_gpu and c and c["status"] == "False" else None

    status = eventually(back, 120)
    assert status is not None, kube.status("extra")
    assert status["node"] == "fovea-gpu-0"
