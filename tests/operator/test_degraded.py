"""The CPU fallback that comes back: Degraded while on the CPU, make-before-break back to a GPU."""

from __future__ import annotations

import dataclasses
from typing import Any

from builders import apply, catalog, catalog_spec, option, running, selection, world
from fovea.domain import degraded
from fovea.domain.conditions import RuntimeState
from fovea.domain.placement import GpuUsage
from fovea.domain.resources import Phase
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Actions, World, reconcile

TASKS = {
    "det": {"big": option(18, modelId="big")},
    "sum": {"big": option(18, modelId="big-sum", cpuMemoryGb=18)},
}


def step(w: World) -> tuple[World, Actions]:
    """One pass; pods then run and are Ready, and report Ready (as their model pods would)."""
    actions = reconcile(w, PodSettings()).actions()
    w = apply(w, actions)
    pods = [running(p) for p in w.pods]
    selections = []
    for sel in w.selections:
        mine = [p for p in pods if p["metadata"]["labels"].get("fovea.dev/selection") == sel.name]
        status: dict[str, Any] = dict(sel.status)
        if mine and status.get("pod"):
            status["runtime"] = {"state": RuntimeState.READY.value, "pod": status["pod"]}
        selections.append(dataclasses.replace(sel, status=status))
    return dataclasses.replace(w, pods=pods, selections=selections), actions


def conditions(w: World, name: str) -> dict[str, dict[str, Any]]:
    sel = next(s for s in w.selections if s.name == name)
    return {c["type"]: c for c in sel.status.get("conditions", [])}


def test_wanted_gpu_is_the_smallest_that_could_hold_it() -> None:
    small = GpuUsage("a", 0, 24.0, 19.2, 0.0, ())
    large = GpuUsage("b", 0, 80.0, 64.0, 0.0, ())
    assert degraded.wanted_gpu([large, small], 18.0) == small
    assert degraded.wanted_gpu([large, small], 30.0) == large
    assert degraded.wanted_gpu([small], 30.0) is None


def test_degraded_on_the_cpu_then_back_on_the_gpu_make_before_break() -> None:
    w = world(
        selection("det", "big", priority=500),
        selection("sum", "big", priority=100),
        catalogs=[catalog(catalog_spec(TASKS))],
    )
    for _ in range(3):
        w, _ = step(w)
    sum_status = next(s for s in w.selections if s.name == "sum").status
    assert sum_status["phase"] == Phase.CPU_FALLBACK
    cond = conditions(w, "sum")["Degraded"]
    assert cond["status"] == "True" and cond["reason"] == "CPUFallback"
    assert "wants gpu-0 GPU 0 (18.0 GB) once memory frees" in cond["message"]
    assert "Degraded" not in conditions(w, "det")  # never fell back: no such condition
    cpu_pod = sum_status["pod"]

    # det goes: memory frees, and sum moves back to the GPU make-before-break.
    # (det's pod leaves first: the GPU pod waits until its memory is really free.)
    w = dataclasses.replace(w, selections=[s for s in w.selections if s.name != "det"])
    w, actions = step(w)
    if not actions.create:
        w, actions = step(w)
    [created] = actions.create
    assert created["metadata"]["name"] != cpu_pod
    assert ("ns", cpu_pod) not in actions.delete
    assert any(p["metadata"]["name"] == cpu_pod for p in w.pods)  # still serving meanwhile
    back = conditions(w, "sum")["Degraded"]
    assert back["status"] == "False" and back["reason"] == "Placed"

    for _ in range(2):
        w, _ = step(w)
    status = next(s for s in w.selections if s.name == "sum").status
    assert status["phase"] == Phase.READY and status["plannedGpuIndex"] == 0
    assert [p["metadata"]["name"] for p in w.pods] == [created["metadata"]["name"]]
