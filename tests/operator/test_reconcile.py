"""The operator's decision as a pure function: snapshots in, typed decisions out."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from builders import (
    NOW,
    apply,
    catalog,
    catalog_spec,
    cpu_node,
    gpu_node,
    option,
    running,
    selection,
    world,
)
from fovea.domain import constants as c
from fovea.domain.conditions import (
    MAX_EVENT_MESSAGE,
    ConditionType,
    EventType,
    Reason,
    RuntimeState,
)
from fovea.domain.resources import Phase
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Actions, Selection, World, reconcile

STAMP = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
EARLIER = "2026-01-01T00:00:00Z"

TASKS = {
    "det": {
        "small": option(modelId="yolov8n", framework="ultralytics", vramMb=512),
        "big": option(18, modelId="big", cpuMemoryGb=4),
        "big2": option(18, modelId="big2"),
        "huge": option(500, modelId="huge"),
    },
    "sum": {
        "claude": {"modelId": "claude", "framework": "external_api", "apiKeySecret": "anthropic"},
        "big": option(18, modelId="big"),
    },
}


def w(
    *selections: Selection,
    pods: list[dict[str, Any]] | None = None,
    inference: dict[str, Any] | None = None,
) -> World:
    return world(*selections, catalogs=[catalog(catalog_spec(TASKS, inference))], pods=pods)


def decide(world_: World, settings: PodSettings | None = None) -> Actions:
    return reconcile(world_, settings or PodSettings()).actions()


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cond["type"]: cond for cond in status["conditions"]}


def test_a_selection_gets_one_pod_and_a_scheduling_status() -> None:
    actions = decide(w(selection("det", "small")))
    assert len(actions.create) == 1
    status = actions.status[("ns", "det")]
    assert status["phase"] == Phase.SCHEDULING
    assert status["node"] == "gpu-0" and status["pod"] == actions.create[0]["metadata"]["name"]
    assert status["plannedGpuIndex"] == 0 and status.get("gpuIndex") is None  # not reported
    assert status["declaredMemoryGb"] == 0.5 and status["observedGeneration"] == 1
    assert "runtime" not in status  # the model pod's subtree
    assert actions.namespaces == {"ns"}


def test_decisions_are_typed_and_frozen() -> None:
    decisions = reconcile(w(selection("det", "small")), PodSettings())
    (one,) = decisions.selections
    assert one.desired_pod is not None and one.create_pod
    assert one.keep == {("ns", one.desired_pod["metadata"]["name"])}
    assert one.status.phase == Phase.SCHEDULING and one.status.pod == one.status.model_dump()["pod"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.create_pod = False  # type: ignore[misc]


def test_the_same_world_gives_the_same_decisions() -> None:
    world_ = w(selection("det", "small"), selection("sum", "big"))
    assert reconcile(world_, PodSettings()) == reconcile(world_, PodSettings())


@pytest.mark.parametrize(
    ("sel", "phase", "reason", "ready"),
    [
        (selection("det", "nope"), Phase.FAILED, Reason.MODEL_NOT_FOUND, False),
        (selection("det", None), Phase.UNSELECTED, Reason.NO_MODEL_SELECTED, False),
        (selection("sum", "claude"), Phase.READY, Reason.EXTERNAL_API, True),
        (selection("nope", "x"), Phase.FAILED, Reason.UNKNOWN_TASK, False),
        (
            selection("det", "small", catalog="other"),
            Phase.PENDING,
            Reason.CATALOG_NOT_FOUND,
            False,
        ),
        (selection("det", "huge"), Phase.UNSCHEDULABLE, Reason.UNSCHEDULABLE, False),
        (selection("det", "small"), Phase.SCHEDULING, Reason.PLACED, False),
    ],
)
def test_every_selection_carries_scheduled_and_ready(
    sel: Selection, phase: Phase, reason: Reason, ready: bool
) -> None:
    status = decide(w(sel)).status[("ns", sel.name)]
    conds = conditions(status)
    assert status["phase"] == phase
    assert set(conds) == {ConditionType.SCHEDULED, ConditionType.READY}
    assert conds[ConditionType.SCHEDULED]["reason"] == reason
    assert conds[ConditionType.READY]["status"] == ("True" if ready else "False")
    for cond in conds.values():
        assert cond["observedGeneration"] == 1 and cond["lastTransitionTime"] == STAMP
        assert cond["message"]


def test_unknown_model_fails_with_the_contract_message_and_creates_nothing() -> None:
    actions = decide(w(selection("det", "nope")))
    assert actions.create == []
    status = actions.status[("ns", "det")]
    assert status["message"] == "Model 'nope' not found for task 'det'"


def test_an_external_api_selection_is_ready_without_a_pod() -> None:
    actions = decide(w(selection("sum", "claude")))  # its API key is the caller's, not read
    status = actions.status[("ns", "sum")]
    assert actions.create == [] and status["device"] == "external"
    assert conditions(status)[ConditionType.READY]["status"] == "True"


def test_on_demand_waits_until_wanted() -> None:
    waiting = decide(w(selection("det", "small", load_policy="onDemand")))
    assert waiting.create == [] and waiting.status[("ns", "det")]["phase"] == Phase.PENDING
    wanted = decide(w(selection("det", "small", load_policy="onDemand", wanted=True)))
    assert len(wanted.create) == 1


def test_without_a_load_policy_the_catalogs_warmup_on_startup_decides() -> None:
    lazy = {"warmupOnStartup": False}
    waiting = decide(w(selection("det", "small"), inference=lazy))
    assert waiting.create == []
    status = waiting.status[("ns", "det")]
    assert status["phase"] == Phase.PENDING
    assert status["message"] == (
        "Load policy onDemand (the catalog's warmupOnStartup is false): "
        "waits for /load or first use"
    )
    assert conditions(status)[ConditionType.SCHEDULED]["reason"] == Reason.WAITING_FOR_DEMAND
    assert len(decide(w(selection("det", "small", wanted=True), inference=lazy)).create) == 1
    eager = decide(w(selection("det", "small"), inference={"warmupOnStartup": True}))
    assert len(eager.create) == 1


def test_an_explicit_load_policy_overrides_the_catalog() -> None:
    lazy, warm = {"warmupOnStartup": False}, {"warmupOnStartup": True}
    assert len(decide(w(selection("det", "small", load_policy="eager"), inference=lazy)).create)
    on_demand = decide(w(selection("det", "small", load_policy="onDemand"), inference=warm))
    assert on_demand.create == []
    assert on_demand.status[("ns", "det")]["message"] == (
        "Load policy onDemand: waits for /load or first use"
    )


def test_a_pod_spec_change_rolls_the_pod_make_before_break() -> None:
    def batch_env(pod: dict[str, Any]) -> str:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        return str(env[c.ENV_BATCH_SIZE])

    default = decide(w(selection("det", "small"))).create[0]
    four = decide(w(selection("det", "small"), inference={"defaultBatchSize": 4})).create[0]
    assert (batch_env(default), batch_env(four)) == ("1", "4")
    assert (
        four["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH]
        != (default["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH])
    )
    # The new spec gives a new pod; the old one serves until it is Ready (both fit).
    old = running(default)
    status = {"pod": old["metadata"]["name"], "model": "small", "node": "gpu-0"}
    rolled = decide(
        w(
            selection("det", "small", {**status, "plannedGpuIndex": 0}),
            pods=[old],
            inference={"defaultBatchSize": 4},
        )
    )
    assert [p["metadata"]["name"] for p in rolled.create] == [four["metadata"]["name"]]
    assert rolled.delete == []
    assert Reason.POD_REPLACED in [e.reason for e in rolled.events]
    done = decide(
        w(selection("det", "small"), pods=[old, running(four)], inference={"defaultBatchSize": 4})
    )
    assert done.create == [] and done.delete == [("ns", old["metadata"]["name"])]
    # Another image: another pod too.
    image = decide(w(selection("det", "small")), PodSettings(image="example/other:2")).create[0]
    assert image["metadata"]["name"] != default["metadata"]["name"]


def test_a_model_above_max_memory_per_model_fails_and_gets_no_pod() -> None:
    limited = {"maxMemoryPerModel": 16}
    actions = decide(w(selection("det", "small"), selection("sum", "big"), inference=limited))
    status = actions.status[("ns", "sum")]
    assert status["phase"] == Phase.FAILED
    assert status["message"] == "Model 'big' needs 18.0 GB, more than max_memory_per_model 16.0 GB"
    assert conditions(status)[ConditionType.SCHEDULED]["reason"] == Reason.EXCEEDS_MAX_MEMORY
    assert [p["metadata"]["labels"][c.LABEL_TASK] for p in actions.create] == ["det"]
    fraction = decide(w(selection("sum", "big"), inference={"maxMemoryPerModel": "17.5"}))
    assert fraction.status[("ns", "sum")]["message"].endswith("max_memory_per_model 17.5 GB")
    for inference in ({"maxMemoryPerModel": "auto"}, {"maxMemoryPerModel": 18}):
        assert len(decide(w(selection("sum", "big"), inference=inference)).create) == 1, inference


def test_lowering_max_memory_per_model_removes_a_running_pod() -> None:
    pod = decide(w(selection("sum", "big"))).create[0]
    actions = decide(w(selection("sum", "big"), pods=[pod], inference={"maxMemoryPerModel": 8}))
    assert actions.create == [] and actions.delete == [("ns", pod["metadata"]["name"])]
    assert actions.status[("ns", "sum")]["phase"] == Phase.FAILED


def test_too_big_is_unschedulable_and_full_gpu_falls_back_to_cpu() -> None:
    actions = decide(w(selection("det", "huge"), selection("sum", "big")))
    assert actions.status[("ns", "det")]["phase"] == Phase.UNSCHEDULABLE
    full = decide(w(selection("sum", "big", priority=200), selection("det", "big")))
    cpu_pods = [
        p
        for p in full.create
        if c.RESOURCE_GPU not in p["spec"]["containers"][0]["resources"]["limits"]
    ]
    assert len(full.create) == 2 and len(cpu_pods) == 1
    assert cpu_pods[0]["metadata"]["labels"][c.LABEL_TASK] == "det"
    det = full.status[("ns", "det")]
    assert det["device"] == "cpu" and det.get("plannedGpuIndex") is None
    assert conditions(det)[ConditionType.SCHEDULED]["reason"] == Reason.CPU_FALLBACK
    warnings = [(e.name, e.reason) for e in full.events if e.type == EventType.WARNING]
    assert warnings == [("det", Reason.CPU_FALLBACK)]


def ready_world(runtime: dict[str, Any], **status: Any) -> tuple[World, str]:
    pod = decide(w(selection("det", "small"))).create[0]
    name = pod["metadata"]["name"]
    report = {"state": RuntimeState.READY.value, "pod": name, **runtime}
    return w(selection("det", "small", {"runtime": report, **status}), pods=[running(pod)]), name


def test_runtime_report_of_the_current_pod_makes_it_ready() -> None:
    world_, _ = ready_world(
        {"measuredMemoryGb": 0.42, "loadTimeSeconds": 1.5, "device": "cpu", "simulatedGpu": True}
    )
    actions = decide(world_)
    status = actions.status[("ns", "det")]
    assert status["phase"] == Phase.READY and status["measuredMemoryGb"] == 0.42
    assert "simulated GPU" in status["message"]
    # The pod runs on the CPU of a simulated GPU: no GPU index is reported, the plan is apart.
    assert status.get("gpuIndex") is None and status["plannedGpuIndex"] == 0
    assert actions.create == [] and actions.delete == []
    assert (EventType.NORMAL, Reason.LOADED) in [(e.type, e.reason) for e in actions.events]
    stale = dataclasses.replace(
        world_.selections[0],
        status={"runtime": {**world_.selections[0].status["runtime"], "pod": "some-old-pod"}},
    )
    loading = decide(dataclasses.replace(world_, selections=[stale]))
    assert loading.status[("ns", "det")]["phase"] == Phase.LOADING


def test_a_status_write_carries_only_what_the_pass_changes() -> None:
    """A field the pass leaves as it read it is not written back (merge patch), so a
    snapshot older than someone's write (a lastUsed, say) does not revert that write."""
    world_, _ = ready_world({"device": "cpu"}, lastUsed="2026-01-01T00:00:00Z")
    patch = decide(world_).status[("ns", "det")]
    assert "lastUsed" not in patch and patch["phase"] == Phase.READY
    settled = apply(world_, decide(world_))
    assert settled.selections[0].status["lastUsed"] == "2026-01-01T00:00:00Z"
    assert ("ns", "det") not in decide(settled).status  # nothing changes: nothing is written
    # The pod reports a use: the operator copies it, and writes just that.
    sel = settled.selections[0]
    used = {**sel.status["runtime"], "lastUsed": "2026-06-01T00:00:00Z"}
    later = dataclasses.replace(
        settled, selections=[dataclasses.replace(sel, status={**sel.status, "runtime": used})]
    )
    assert decide(later).status[("ns", "det")] == {"lastUsed": "2026-06-01T00:00:00Z"}


def test_the_gpu_index_is_what_the_pod_reports() -> None:
    world_, _ = ready_world({"measuredMemoryGb": 0.4, "loadTimeSeconds": 1.0, "device": "cuda:0"})
    status = decide(world_).status[("ns", "det")]
    assert (status["device"], status["gpuIndex"], status["plannedGpuIndex"]) == ("cuda:0", 0, 0)


def test_a_ready_model_without_a_measurement_says_not_measured() -> None:
    world_, _ = ready_world({"device": "cpu"}, measuredMemoryGb=0.0, loadTimeSeconds=0.0)
    status = decide(world_).status[("ns", "det")]
    assert status["phase"] == Phase.READY
    assert status["measuredMemoryGb"] is None and status["loadTimeSeconds"] is None  # removed
    assert "not measured" in status["message"]


def test_a_failed_load_is_a_warning_event_and_the_reason() -> None:
    pod = decide(w(selection("det", "small"))).create[0]
    report = {"state": "Failed", "pod": pod["metadata"]["name"], "reason": "weights not on disk"}
    actions = decide(w(selection("det", "small", {"runtime": report}), pods=[running(pod)]))
    status = actions.status[("ns", "det")]
    assert status["phase"] == Phase.FAILED
    assert conditions(status)[ConditionType.READY]["reason"] == Reason.LOAD_FAILED
    assert (EventType.WARNING, Reason.LOAD_FAILED) in [(e.type, e.reason) for e in actions.events]


def test_switch_is_make_before_break_when_both_fit() -> None:
    old = running(decide(w(selection("det", "small"))).create[0])
    switched = selection("det", "big")
    actions = decide(w(switched, pods=[old]))
    assert len(actions.create) == 1 and actions.delete == []  # 0.5 + 18 <= 19.2
    new = running(actions.create[0])
    done = decide(w(switched, pods=[old, new]))
    assert done.delete == [("ns", old["metadata"]["name"])]


def test_switch_is_break_before_make_when_both_do_not_fit() -> None:
    old = decide(w(selection("det", "big"))).create[0]
    actions = decide(w(selection("det", "big2"), pods=[old]))
    assert actions.create == []  # 18 + 18 > 19.2 would overcommit: the old pod goes first
    assert actions.delete == [("ns", old["metadata"]["name"])]
    assert len(decide(w(selection("det", "big2"))).create) == 1


def test_orphans_are_deleted() -> None:
    pod = decide(w(selection("det", "small"))).create[0]
    assert decide(w(pods=[pod])).delete == [("ns", pod["metadata"]["name"])]


# --- conditions: transitions, no-op writes ----------------------------------------------------


def stored(status: dict[str, Any], /, **changes: Any) -> dict[str, Any]:
    """A stored status whose conditions carry an earlier transition time."""
    conds = [{**cond, "lastTransitionTime": EARLIER, **changes} for cond in status["conditions"]]
    return {**status, "conditions": conds}


@pytest.mark.parametrize(
    ("change", "kept", "written"),
    [
        ({}, True, False),  # nothing changes: no patch, the old time stays
        ({"message": "older words"}, True, True),  # a new message: written, time kept
        ({"reason": "Placed"}, True, True),  # same status, another reason: time kept
        ({"status": "True"}, False, True),  # the status flips: a new time
        ({"observedGeneration": 0}, True, True),  # an older generation: written, time kept
    ],
)
def test_condition_transitions(change: dict[str, Any], kept: bool, written: bool) -> None:
    sel = selection("det", "nope")
    first = decide(w(sel)).status[("ns", "det")]
    again = dataclasses.replace(sel, status=stored(first, **change))
    actions = decide(w(again))
    assert (("ns", "det") in actions.status) == written
    if written:
        times = {c["lastTransitionTime"] for c in actions.status[("ns", "det")]["conditions"]}
        assert times == ({EARLIER} if kept else {STAMP})


def test_a_message_longer_than_an_event_allows_is_cut_in_the_middle() -> None:
    pod = decide(w(selection("det", "small"))).create[0]
    reason = "x" * 3000 + " the end"
    report = {"state": "Failed", "pod": pod["metadata"]["name"], "reason": reason}
    actions = decide(w(selection("det", "small", {"runtime": report}), pods=[running(pod)]))
    (event,) = [e for e in actions.events if e.reason == Reason.LOAD_FAILED]
    assert len(event.message) == MAX_EVENT_MESSAGE and "…" in event.message
    assert event.message.endswith("the end")
    ready = conditions(actions.status[("ns", "det")])[ConditionType.READY]
    assert ready["message"].endswith(reason)  # a condition holds up to 32 KiB


# --- the fixed point: apply what was decided, decide again, nothing to do -----------------------


def converge(world_: World, passes: int = 4) -> tuple[World, int]:
    for done in range(passes):
        actions = decide(world_)
        if not actions and not actions.events:
            return world_, done
        world_ = apply(world_, actions)
    raise AssertionError(f"no fixed point after {passes} passes: {decide(world_)}")


@pytest.mark.parametrize(
    "selections",
    [
        [selection("det", "small"), selection("sum", "big")],
        [selection("det", "huge"), selection("sum", "claude"), selection("nope", "x")],
        [selection("sum", "big", priority=200), selection("det", "big")],  # CPU fallback
        [selection("det", None)],
    ],
)
def test_applying_the_decisions_reaches_a_fixed_point(selections: list[Selection]) -> None:
    final, passes = converge(w(*selections))
    # One application; a second only to say "stays on" once the pod exists.
    assert passes <= 2
    again = reconcile(final, PodSettings())
    assert all(d.patch is None and not d.events for d in again.selections)
    assert all(d.patch is None for d in again.catalogs)


def test_a_break_before_make_switch_converges_in_two_passes() -> None:
    start, _ = converge(w(selection("det", "big")))
    switched = dataclasses.replace(
        start,
        selections=[dataclasses.replace(start.selections[0], spec=selection("det", "big2").spec)],
    )
    final, passes = converge(switched)
    assert passes <= 3  # delete the old pod, then create the new one (then "stays on")
    assert [p["metadata"]["labels"][c.LABEL_MODEL] for p in final.pods] == ["big2"]


# --- ModelCatalog status ------------------------------------------------------------------------


def test_a_valid_catalog_is_accepted_with_its_options() -> None:
    actions = decide(w())
    status = actions.catalog_status[("ns", "default")]
    assert status["options"] == {"det": ["big", "big2", "huge", "small"], "sum": ["big", "claude"]}
    assert status["problems"] == [] and status["observedGeneration"] == 1
    (accepted,) = status["conditions"]
    assert (accepted["type"], accepted["status"], accepted["reason"]) == (
        ConditionType.ACCEPTED,
        "True",
        Reason.VALID,
    )
    assert actions.events == []


def test_an_invalid_catalog_lists_every_problem_and_its_selections_say_so() -> None:
    bad = catalog_spec(
        {"det": {"a": {"modelId": "a"}, "b": {"modelId": "b", "vramGb": 1, "vramMb": 2}}},
        inference={"defaultBatchSize": 9, "maxBatchSize": 2},
    )
    world_ = world(selection("det", "a"), catalogs=[catalog(bad)])
    actions = decide(world_)
    status = actions.catalog_status[("ns", "default")]
    assert len(status["problems"]) == 3 and status["options"] == {}
    assert status["conditions"][0]["status"] == "False"
    assert status["conditions"][0]["reason"] == Reason.INVALID
    assert [(e.kind, e.reason) for e in actions.events if e.kind == c.CATALOG_KIND] == [
        (c.CATALOG_KIND, Reason.INVALID)
    ]
    sel = actions.status[("ns", "det")]
    assert conditions(sel)[ConditionType.SCHEDULED]["reason"] == Reason.CATALOG_INVALID


def test_gpu_nodes_from_the_builders_are_planned() -> None:
    world_ = world(
        selection("det", "big"),
        catalogs=[catalog(catalog_spec(TASKS))],
        nodes=[gpu_node("gpu-a", 80, count=2), cpu_node()],
    )
    status = decide(world_).status[("ns", "det")]
    assert status["node"] == "gpu-a" and status["plannedGpuIndex"] in (0, 1)
