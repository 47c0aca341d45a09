"""Keep-alive in the operator's decision: idle on-demand models are unloaded, and come back."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from builders import NOW, apply, catalog, catalog_spec, option, running, selection, world
from fovea.domain.conditions import EventType, Reason, RuntimeState
from fovea.domain.resources import Phase
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Actions, World, reconcile

KEY = ("ns", "det")
TASKS = {"det": {"small": option(modelId="yolov8n", framework="ultralytics", vramMb=512)}}


def decide(w: World, minutes: float = 0) -> Actions:
    return reconcile(dataclasses.replace(w, now=NOW + timedelta(minutes=minutes)), PodSettings())


def step(w: World, minutes: float = 0) -> tuple[World, Actions]:
    actions = decide(w, minutes).actions()
    return apply(dataclasses.replace(w, now=NOW + timedelta(minutes=minutes)), actions), actions


def loaded(keep_alive: str | None, option_keep_alive: str | None = None) -> World:
    """An on-demand, wanted selection whose model is loaded and Ready at NOW."""
    small = {**TASKS["det"]["small"]}
    if option_keep_alive is not None:
        small["keepAlive"] = option_keep_alive
    spec = {"load_policy": "onDemand", "wanted": True, "keep_alive": keep_alive}
    w = world(
        selection("det", "small", **spec),
        catalogs=[catalog(catalog_spec({"det": {"small": small}}))],
    )
    w, actions = step(w)
    [pod] = actions.create
    report: dict[str, Any] = {"state": RuntimeState.READY.value, "pod": pod["metadata"]["name"]}
    sel = dataclasses.replace(w.selections[0], status={**w.selections[0].status, "runtime": report})
    w = dataclasses.replace(w, selections=[sel], pods=[running(pod)])
    w, _ = step(w)
    assert w.selections[0].status["phase"] == Phase.READY
    return w


def test_an_idle_on_demand_model_is_unloaded_after_its_keep_alive_and_stays_so() -> None:
    w = loaded("5m")
    _, early = step(w, minutes=4)
    assert early.delete == [] and KEY not in early.status  # still within its keep-alive

    w, actions = step(w, minutes=6)
    assert len(actions.delete) == 1 and actions.create == []  # the pod goes
    status = actions.status[KEY]
    assert status["phase"] == Phase.PENDING
    # Stamped when it became due (Ready at NOW, keepAlive 5m), not at the pass that saw it.
    assert status["idleUnloadedAt"] == (NOW + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "unused for its keepAlive (5m)" in status["message"]
    [event] = [e for e in actions.events if e.reason == Reason.IDLE_UNLOADED]
    assert event.type == EventType.NORMAL
    assert w.selections[0].spec is not None and w.selections[0].spec.wanted  # selection kept

    w, later = step(w, minutes=30)
    assert later.create == [] and w.pods == []  # no use since: still unloaded


def test_a_load_after_the_idle_unload_loads_it_again() -> None:
    w, _ = step(loaded("5m"), minutes=6)
    spec = w.selections[0].spec
    assert spec is not None
    again = spec.model_copy(update={"load_requested_at": (NOW + timedelta(minutes=8)).isoformat()})
    w = dataclasses.replace(w, selections=[dataclasses.replace(w.selections[0], spec=again)])
    w, actions = step(w, minutes=8)
    assert len(actions.create) == 1
    assert actions.status[KEY]["idleUnloadedAt"] is None  # cleared: loaded again


def test_pinned_never_unloads_and_the_options_keep_alive_applies_when_the_selection_has_none() -> (
    None
):
    _, pinned = step(loaded("-1", option_keep_alive="1m"), minutes=60 * 24)
    assert pinned.delete == []
    _, from_option = step(loaded(None, option_keep_alive="1m"), minutes=2)
    assert len(from_option.delete) == 1
    _, unset = step(loaded(None), minutes=60 * 24)
    assert unset.delete == []
