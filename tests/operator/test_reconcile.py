"""The operator's decision as a pure function: snapshots in, actions out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fovea.domain import constants as c
from fovea.domain.resources import SelectionSpec
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Selection, World, reconcile

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def gpu_node(name: str, gib: int, count: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                c.NODE_LABEL_GPU_MEMORY_MIB: str(gib * 1024),
                c.NODE_LABEL_GPU_COUNT: str(count),
            },
        },
        "spec": {},
        "status": {
            "allocatable": {c.RESOURCE_GPU: str(count), "cpu": "8", "memory": "64Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


CPU_NODE = {
    "metadata": {"name": "cpu-0", "labels": {}},
    "spec": {},
    "status": {
        "allocatable": {"cpu": "8", "memory": "64Gi"},
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}

CATALOG = {
    "tasks": {
        "det": {
            "options": {
                "small": {"modelId": "yolov8n", "framework": "ultralytics", "vramMb": 512},
                "big": {"modelId": "big", "vramGb": 18, "cpuMemoryGb": 4},
                "big2": {"modelId": "big2", "vramGb": 18},
                "huge": {"modelId": "huge", "vramGb": 500},
            }
        },
        "sum": {
            "options": {
                "claude": {
                    "modelId": "claude",
                    "framework": "external_api",
                    "apiKeySecret": "anthropic",
                },
                "big": {"modelId": "big", "vramGb": 18},
            }
        },
    }
}


def sel(
    task: str, model: str | None, status: dict[str, Any] | None = None, **spec: Any
) -> Selection:
    name = task.replace("_", "-")
    return Selection(
        namespace="ns",
        name=name,
        uid=f"uid-{name}",
        generation=1,
        spec=SelectionSpec(task=task, model=model, **spec),
        status=status or {},
    )


def world(
    *selections: Selection,
    pods: list[dict[str, Any]] | None = None,
    secrets: frozenset[tuple[str, str]] = frozenset(),
    inference: dict[str, Any] | None = None,
) -> World:
    catalog = CATALOG if inference is None else {**CATALOG, "inference": inference}
    return World(
        catalogs={("ns", "default"): catalog},
        selections=list(selections),
        nodes=[gpu_node("gpu-0", 24), CPU_NODE],
        pods=pods or [],
        secrets=secrets,
        now=NOW,
    )


def test_a_selection_gets_one_pod_and_a_scheduling_status() -> None:
    actions = reconcile(world(sel("det", "small")), PodSettings())
    assert len(actions.create) == 1
    status = actions.status[("ns", "det")]
    assert status["phase"] == "Scheduling"
    assert status["node"] == "gpu-0" and status["pod"] == actions.create[0]["metadata"]["name"]
    assert status["declaredMemoryGb"] == 0.5 and status["observedGeneration"] == 1
    assert actions.namespaces == {"ns"}


def test_the_same_world_gives_the_same_actions() -> None:
    w = world(sel("det", "small"), sel("sum", "big"))
    assert reconcile(w, PodSettings()) == reconcile(w, PodSettings())


def test_unknown_model_fails_with_the_contract_message_and_creates_nothing() -> None:
    actions = reconcile(world(sel("det", "nope")), PodSettings())
    assert actions.create == []
    status = actions.status[("ns", "det")]
    assert status["phase"] == "Failed"
    assert status["message"] == "Model 'nope' not found for task 'det'"


def test_no_model_is_unselected_and_external_api_needs_its_secret() -> None:
    actions = reconcile(world(sel("det", None), sel("sum", "claude")), PodSettings())
    assert actions.create == []
    assert actions.status[("ns", "det")]["phase"] == "Unselected"
    missing = actions.status[("ns", "sum")]
    assert missing["phase"] == "Pending" and "anthropic" in missing["message"]
    present = reconcile(
        world(sel("sum", "claude"), secrets=frozenset({("ns", "anthropic")})), PodSettings()
    )
    assert present.status[("ns", "sum")]["phase"] == "Ready" and present.create == []


def test_on_demand_waits_until_wanted() -> None:
    waiting = reconcile(world(sel("det", "small", load_policy="onDemand")), PodSettings())
    assert waiting.create == [] and waiting.status[("ns", "det")]["phase"] == "Pending"
    wanted = reconcile(
        world(sel("det", "small", load_policy="onDemand", wanted=True)), PodSettings()
    )
    assert len(wanted.create) == 1


def test_without_a_load_policy_the_catalogs_warmup_on_startup_decides() -> None:
    lazy = {"warmupOnStartup": False}
    waiting = reconcile(world(sel("det", "small"), inference=lazy), PodSettings())
    assert waiting.create == []
    status = waiting.status[("ns", "det")]
    assert status["phase"] == "Pending"
    assert status["message"] == (
        "Load policy onDemand (the catalog's warmupOnStartup is false): "
        "waits for /load or first use"
    )
    assert status["conditions"][0]["reason"] == "WaitingForDemand"
    wanted = reconcile(world(sel("det", "small", wanted=True), inference=lazy), PodSettings())
    assert len(wanted.create) == 1
    eager = reconcile(
        world(sel("det", "small"), inference={"warmupOnStartup": True}), PodSettings()
    )
    assert len(eager.create) == 1


def test_an_explicit_load_policy_overrides_the_catalog() -> None:
    lazy, warm = {"warmupOnStartup": False}, {"warmupOnStartup": True}
    eager = reconcile(
        world(sel("det", "small", load_policy="eager"), inference=lazy), PodSettings()
    )
    assert len(eager.create) == 1
    on_demand = reconcile(
        world(sel("det", "small", load_policy="onDemand"), inference=warm), PodSettings()
    )
    assert on_demand.create == []
    assert on_demand.status[("ns", "det")]["message"] == (
        "Load policy onDemand: waits for /load or first use"
    )


def test_the_warm_up_batch_is_the_catalogs_default_batch_size() -> None:
    def batch_env(pod: dict[str, Any]) -> str:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        return str(env[c.ENV_BATCH_SIZE])

    default = reconcile(world(sel("det", "small")), PodSettings()).create[0]
    four = reconcile(
        world(sel("det", "small"), inference={"defaultBatchSize": 4}), PodSettings()
    ).create[0]
    assert (batch_env(default), batch_env(four)) == ("1", "4")
    # The name covers model and target only: a new batch size alone replaces no pod.
    assert four["metadata"]["name"] == default["metadata"]["name"]
    running = {**default, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    kept = reconcile(
        world(sel("det", "small"), pods=[running], inference={"defaultBatchSize": 4}),
        PodSettings(),
    )
    assert kept.create == [] and kept.delete == []


def test_a_model_above_max_memory_per_model_fails_and_gets_no_pod() -> None:
    limited = {"maxMemoryPerModel": 16}
    actions = reconcile(
        world(sel("det", "small"), sel("sum", "big"), inference=limited), PodSettings()
    )
    status = actions.status[("ns", "sum")]
    assert status["phase"] == "Failed"
    assert status["message"] == "Model 'big' needs 18.0 GB, more than max_memory_per_model 16.0 GB"
    assert status["conditions"][0]["reason"] == "ExceedsMaxMemoryPerModel"
    assert [p["metadata"]["labels"][c.LABEL_TASK] for p in actions.create] == ["det"]
    # A fraction works too (the CRD stores it as a decimal string).
    fractional = world(sel("sum", "big"), inference={"maxMemoryPerModel": "17.5"})
    fraction = reconcile(fractional, PodSettings())
    assert fraction.status[("ns", "sum")]["message"].endswith("max_memory_per_model 17.5 GB")
    # auto: only the GPUs limit it; a limit at the model's figure allows it.
    for inference in ({"maxMemoryPerModel": "auto"}, {"maxMemoryPerModel": 18}):
        allowed = reconcile(world(sel("sum", "big"), inference=inference), PodSettings())
        assert len(allowed.create) == 1, inference


def test_lowering_max_memory_per_model_removes_a_running_pod() -> None:
    pod = reconcile(world(sel("sum", "big")), PodSettings()).create[0]
    actions = reconcile(
        world(sel("sum", "big"), pods=[pod], inference={"maxMemoryPerModel": 8}), PodSettings()
    )
    assert actions.create == [] and actions.delete == [("ns", pod["metadata"]["name"])]
    assert actions.status[("ns", "sum")]["phase"] == "Failed"


def test_too_big_is_unschedulable_and_full_gpu_falls_back_to_cpu() -> None:
    actions = reconcile(world(sel("det", "huge"), sel("sum", "big")), PodSettings())
    assert actions.status[("ns", "det")]["phase"] == "Unschedulable"
    full = reconcile(world(sel("sum", "big", priority=200), sel("det", "big")), PodSettings())
    # both need 18 GiB of one 24 GiB GPU at 0.8: sum outranks det, det falls back to the CPU
    cpu_pods = [
        p
        for p in full.create
        if c.RESOURCE_GPU not in p["spec"]["containers"][0]["resources"]["limits"]
    ]
    assert len(full.create) == 2 and len(cpu_pods) == 1
    assert cpu_pods[0]["metadata"]["labels"][c.LABEL_TASK] == "det"
    assert full.status[("ns", "det")]["device"] == "cpu"
    assert [e.reason for e in full.events] == ["CPUFallback"]


def test_runtime_report_of_the_current_pod_makes_it_ready() -> None:
    first = reconcile(world(sel("det", "small")), PodSettings())
    pod = first.create[0]
    name = pod["metadata"]["name"]
    running = {
        **pod,
        "spec": {**pod["spec"], "nodeName": "gpu-0"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    runtime = {
        "state": "Ready",
        "pod": name,
        "measuredMemoryGb": 0.42,
        "loadTimeSeconds": 1.5,
        "device": "cpu",
        "simulatedGpu": True,
    }
    actions = reconcile(
        world(sel("det", "small", {"runtime": runtime}), pods=[running]), PodSettings()
    )
    status = actions.status[("ns", "det")]
    assert status["phase"] == "Ready" and status["measuredMemoryGb"] == 0.42
    assert "simulated GPU" in status["message"]
    assert actions.create == [] and actions.delete == []
    stale = {**runtime, "pod": "some-old-pod"}
    loading = reconcile(
        world(sel("det", "small", {"runtime": stale}), pods=[running]), PodSettings()
    )
    assert loading.status[("ns", "det")]["phase"] == "Loading"


def test_switch_is_make_before_break_when_both_fit() -> None:
    old = reconcile(world(sel("det", "small")), PodSettings()).create[0]
    old_ready = {**old, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    switched = sel("det", "big")
    actions = reconcile(world(switched, pods=[old_ready]), PodSettings())
    # 0.5 + 18 <= 19.2: the new pod starts while the old one still serves
    assert len(actions.create) == 1 and actions.delete == []
    new = {**actions.create[0], "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    done = reconcile(world(switched, pods=[old_ready, new]), PodSettings())
    assert done.delete == [("ns", old["metadata"]["name"])]


def test_switch_is_break_before_make_when_both_do_not_fit() -> None:
    old = reconcile(world(sel("det", "big")), PodSettings()).create[0]
    actions = reconcile(world(sel("det", "big2"), pods=[old]), PodSettings())
    assert actions.create == []  # 18 + 18 > 19.2 would overcommit: the old pod goes first
    assert actions.delete == [("ns", old["metadata"]["name"])]
    after = reconcile(world(sel("det", "big2")), PodSettings())
    assert len(after.create) == 1


def test_orphans_are_deleted() -> None:
    pod = reconcile(world(sel("det", "small")), PodSettings()).create[0]
    actions = reconcile(world(pods=[pod]), PodSettings())
    assert actions.delete == [("ns", pod["metadata"]["name"])]
