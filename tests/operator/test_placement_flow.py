"""Placement the scheduler accepts: the operator's hooks as pure decisions, then the flow
on the local cluster (two namespaces, the one packing of 63.9, 19.1 and 19.1 GiB)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builders import NS, apply, catalog, catalog_spec, cpu_node, gpu_node, option, running, world
from builders import selection as sel
from fovea.domain import constants as c
from fovea.domain.nodes import ANNOTATION_AVOID_NODES, pod_requests
from fovea.domain.resources import ModelOption, Phase
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Actions, World, reconcile
from kube_testing import Kube, eventually, holds_gpu
from kube_testing import tiny_option as tiny

SETTINGS = PodSettings()
TASKS = {
    "big": {"m": option(63.9)},
    "s1": {"m": option(19.1)},
    "s2": {"m": option(19.1)},
    "det": {"m": option(1.0, framework="transformers", cpuMemoryGb=3.0)},
}
LOCAL = [gpu_node("gpu-0", 24, count=2), gpu_node("gpu-1", 80), cpu_node()]
REFUSED = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match node affinity."


def w(*selections: Any, pods: list[dict[str, Any]] | None = None, **kw: Any) -> World:
    spec = catalog_spec(TASKS, {"offloadThreshold": 0.8})
    base = world(*selections, catalogs=[catalog(spec)], nodes=LOCAL, pods=pods)
    return dataclasses.replace(base, **kw)


def decide(world_: World) -> Actions:
    return reconcile(world_, SETTINGS).actions()


def planned(pod: dict[str, Any]) -> tuple[str, str]:
    ann = pod["metadata"]["annotations"]
    return ann[c.ANNOTATION_PLANNED_NODE], ann[c.ANNOTATION_PLANNED_GPU]


def refused(pod: dict[str, Any], message: str = REFUSED) -> dict[str, Any]:
    """The pod as the scheduler leaves it when no node fits: Pending, PodScheduled False."""
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
    }
    return {**pod, "status": {"phase": "Pending", "conditions": [cond]}}


# --- the operator's part, as pure decisions ----------------------------------------------


def test_the_selections_applied_together_get_the_one_packing() -> None:
    actions = decide(
        w(
            sel("big", "m", priority=1000),
            sel("s1", "m", priority=1000),
            sel("s2", "m", priority=1000),
        )
    )
    where = {p["metadata"]["labels"][c.LABEL_TASK]: planned(p) for p in actions.create}
    assert where["big"] == ("gpu-1", "0")
    assert {where["s1"], where["s2"]} == {("gpu-0", "0"), ("gpu-0", "1")}


def test_pods_request_exactly_what_the_planner_counted() -> None:
    actions = decide(w(sel("det", "m")))
    requests = actions.create[0]["spec"]["containers"][0]["resources"]["requests"]
    counted = pod_requests(ModelOption.model_validate(TASKS["det"]["m"]))
    assert (requests["cpu"], requests["memory"]) == ("1000m", "3072Mi")
    assert {k: requests[k] for k in ("cpu", "memory")} == counted.requests()


def test_other_pods_on_a_node_are_counted() -> None:
    # Someone else's pod takes all but 500m of gpu-0's CPU: the 1-CPU model pod goes elsewhere.
    hog = {
        "metadata": {"namespace": "other", "name": "hog"},
        "spec": {
            "nodeName": "gpu-0",
            "containers": [{"resources": {"requests": {"cpu": "7500m"}}}],
        },
        "status": {"phase": "Running"},
    }
    actions = decide(w(sel("det", "m"), node_pods=[hog]))
    assert planned(actions.create[0]) == ("gpu-1", "0")


def test_failed_scheduling_replans_elsewhere_and_says_why() -> None:
    first = w(sel("det", "m"))
    pod = decide(first).create[0]
    assert planned(pod)[0] == "gpu-0"
    stuck = dataclasses.replace(apply(first, decide(first)), pods=[refused(pod)])
    actions = decide(stuck)
    new = actions.create[0]
    assert planned(new)[0] == "gpu-1"
    assert new["metadata"]["annotations"][ANNOTATION_AVOID_NODES] == "gpu-0"
    assert actions.delete == [(NS, pod["metadata"]["name"])]  # a refused pod holds nothing
    status = actions.status[(NS, "det")]
    said = f"the scheduler could not place pod {pod['metadata']['name']}: {REFUSED}"
    assert status["message"].endswith(said)
    scheduled = next(x for x in status["conditions"] if x["type"] == "Scheduled")
    assert scheduled["message"].endswith(said)
    # The refusal travels with the new pod: the plan keeps avoiding gpu-0.
    later = dataclasses.replace(apply(stuck, actions), pods=[running(new)])
    assert decide(later).create == [] and decide(later).delete == []


def test_failed_scheduling_with_nowhere_else_waits_and_keeps_the_message() -> None:
    only = [gpu_node("gpu-0", 24), cpu_node()]
    first = w(sel("s1", "m"), nodes=only)
    pod = decide(first).create[0]
    stuck = dataclasses.replace(apply(first, decide(first)), pods=[refused(pod)])
    actions = decide(stuck)
    assert actions.create == [] and actions.delete == []  # it waits for room on its node
    status = actions.status[(NS, "s1")]
    assert status["phase"] == Phase.UNSCHEDULABLE
    assert "avoiding gpu-0: the scheduler refused it" in status["message"]
    assert REFUSED in status["message"]


def test_moved_models_leave_before_the_one_they_make_room_for_arrives() -> None:
    # Both 19.1 GiB models run on the 80 GiB GPU (an earlier plan); the 63.9 arrives.
    old_world = w(
        sel("s1", "m", priority=1000),
        sel("s2", "m", priority=1000),
        nodes=[gpu_node("gpu-1", 80), cpu_node()],
    )
    placed = apply(old_world, decide(old_world))
    on_80 = [running(p) for p in placed.pods]
    assert {planned(p) for p in on_80} == {("gpu-1", "0")}
    now = dataclasses.replace(
        placed,
        nodes=LOCAL,
        pods=on_80,
        selections=[*placed.selections, sel("big", "m", priority=1000)],
    )
    actions = decide(now)
    created = {p["metadata"]["labels"][c.LABEL_TASK]: planned(p) for p in actions.create}
    assert {created["s1"], created["s2"]} == {("gpu-0", "0"), ("gpu-0", "1")}  # moved
    assert "big" not in created  # its GPU still holds the two old pods: make-before-break
    assert actions.delete == []  # the old pods run until their successors are Ready
    assert {e.reason for e in actions.events if e.name in ("s1", "s2")} >= {"Rescheduled"}
    moved = apply(now, actions)
    successors = [running(p) for p in moved.pods if planned(p)[0] == "gpu-0"]
    ready = dataclasses.replace(moved, pods=[*on_80, *successors])
    assert sorted(decide(ready).delete) == sorted((NS, p["metadata"]["name"]) for p in on_80)
    gone = dataclasses.replace(ready, pods=successors)
    assert [planned(p) for p in decide(gone).create] == [("gpu-1", "0")]


# --- the flow on the local cluster (GPUs 2x24 GiB on fovea-gpu-0, 1x80 GiB on fovea-gpu-1) ---


def local_catalog(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "tasks": {t: {"options": {"m": o}} for t, o in tasks.items()},
        "inference": {"offloadThreshold": 0.8, "warmupOnStartup": True},
    }


@pytest.fixture
def other_team(kube: Kube) -> Iterator[Kube]:
    """A second namespace on the same cluster, deleted afterwards."""
    name = f"{kube.namespace[:50]}-b"
    body: Any = {"metadata": {"name": name, "labels": {f"{c.GROUP}/test": "true"}}}
    kube.core.create_namespace(body)
    assert eventually(lambda: _has_default_account(kube, name), timeout=30)
    yield Kube(kube.api, kube.kubeconfig, name)
    kube.core.delete_namespace(name)


def _has_default_account(kube: Kube, namespace: str) -> bool:
    return any(
        sa.metadata.name == "default"
        for sa in kube.core.list_namespaced_service_account(namespace).items
    )


@pytest.fixture
def operator_of_both(kube: Kube, other_team: Kube, tmp_path: Path) -> Iterator[None]:
    """The real operator, planning the two namespaces together (its Lease in the first)."""
    env = {
        **os.environ,
        "KUBECONFIG": kube.kubeconfig,
        "FOVEA_OPERATOR_LEASE_NAMESPACE": kube.namespace,
        "FOVEA_OPERATOR_LEASE_SECONDS": "6",
        "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
    }
    namespaces = ["-n", kube.namespace, "-n", other_team.namespace]
    with open(tmp_path / "operator.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", "operator", *namespaces],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        yield
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def unscheduled(kubes: list[Kube]) -> list[str]:
    """Model pods that the scheduler has not bound to a node (Pending, or refused)."""
    return [
        f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        for k in kubes
        for p in k.model_pods()
        if not p["spec"].get("nodeName")
    ]


@pytest.mark.parametrize("arrival", ["together", "one at a time"])
def test_three_priority_1000_selections_all_run_on_gpus(
    kube: Kube, other_team: Kube, operator_of_both: None, arrival: str
) -> None:
    # The other team runs three small models first.
    small = {t: tiny(1.0, cpuMemoryGb=0.5) for t in ("det", "track", "seg")}
    other_team.apply_catalog(local_catalog(small))
    for task in small:
        other_team.select(task, "m")
    settled = eventually(
        lambda: len(other_team.model_pods()) == 3 and not unscheduled([other_team]), timeout=120
    )
    assert settled, (other_team.phases(), other_team.model_pods())

    # This team applies three priority-1000 selections together.
    # The small ones first: one at a time, a 19.1 GiB model is planned before the 63.9 exists
    # (the second one then lands on the 80 GiB GPU, and has to move for the 63.9).
    kube.apply_catalog(local_catalog({"big": tiny(63.9), "s1": tiny(19.1), "s2": tiny(19.1)}))
    for task in ("s1", "s2", "big"):
        kube.select(task, "m", priority=1000)
        if arrival == "one at a time":
            assert eventually(lambda t=task: kube.status(t).get("pod")), kube.status(task)

    def all_ready() -> dict[str, str] | None:
        phases = kube.phases()
        return phases if phases == {"big": "Ready", "s1": "Ready", "s2": "Ready"} else None

    ready = eventually(all_ready, timeout=240)
    assert ready, ({t: kube.status(t) for t in ("big", "s1", "s2")}, unscheduled([kube]))
    where = {}
    for task in ("big", "s1", "s2"):
        pod = kube.pod(kube.status(task)["pod"])
        assert pod is not None
        ann = pod["metadata"]["annotations"]
        node, gpu = ann[c.ANNOTATION_PLANNED_NODE], ann[c.ANNOTATION_PLANNED_GPU]
        assert pod["spec"]["nodeName"] == node
        assert holds_gpu(pod)  # a GPU pod (simulated GPUs: the model runs on CPU)
        where[task] = (node, gpu)
    assert where["big"] == ("fovea-gpu-1", "0")
    assert {where["s1"], where["s2"]} == {("fovea-gpu-0", "0"), ("fovea-gpu-0", "1")}

    # The small models fell back to the CPU (or wait); no model pod is left unschedulable.
    def no_pod_waits() -> bool:
        bound = not unscheduled([kube, other_team])
        phases = set(other_team.phases().values())
        return bound and phases <= {"Ready", "CPUFallback", "Loading", "Evicted"}

    assert eventually(no_pod_waits, timeout=120), (
        unscheduled([kube, other_team]),
        {t: other_team.status(t) for t in small},
    )
