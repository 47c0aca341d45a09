"""Node capacities as the scheduler counts them, and the requests of model pods."""

from __future__ import annotations

from typing import Any

from fovea.domain import constants as c
from fovea.domain.nodes import (
    CPU_MILLIS_BY_FRAMEWORK,
    UNLIMITED,
    NodeCapacity,
    PodRequests,
    Refusals,
    avoid_annotation,
    model_pod_tolerations,
    node_capacities,
    node_images,
    pod_requests,
    refusals,
    requests_of,
    taints_tolerated,
    unschedulable,
)
from fovea.domain.resources import Framework, ModelOption


def node(name: str, allocatable: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": spec,
        "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(node_name: str | None, *containers: dict[str, str], phase: str = "Running") -> dict:
    return {
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"requests": r}} for r in containers],
        },
        "status": {"phase": phase},
    }


def test_pod_requests_follow_the_option() -> None:
    small = ModelOption(model_id="y", framework="ultralytics", vram_mb=512, cpu_memory_gb=1.0)
    assert pod_requests(small) == PodRequests(500, 1024)
    engine = ModelOption(model_id="l", framework="vllm", vram_gb=16)
    assert pod_requests(engine) == PodRequests(2000, 2048)  # 2 GiB default
    assert pod_requests(engine, default_memory_gib=4.0).memory_mib == 4096
    assert PodRequests(500, 1024).requests() == {"cpu": "500m", "memory": "1024Mi"}
    assert PodRequests(500, 1024).limits() == {"memory": "1536Mi"}
    assert set(CPU_MILLIS_BY_FRAMEWORK) == set(Framework)


def test_capacity_is_allocatable_minus_the_pods_bound_there() -> None:
    nodes = [
        node("gpu", {"cpu": "2", "memory": "4Gi", "pods": "10", c.RESOURCE_GPU: "16"}),
        node("cpu", {"cpu": "4000m", "memory": "8Gi", "pods": "110"}),
        node("cordoned", {"cpu": "4"}, unschedulable=True),
    ]
    gpu_pod = pod("gpu", {"cpu": "500m", "memory": "1Gi", c.RESOURCE_GPU: "1"})
    pods = [
        gpu_pod,
        pod("gpu", {"cpu": "250m"}, {"cpu": "250m", "memory": "512Mi"}),
        pod("gpu", {"cpu": "1"}, phase="Succeeded"),  # finished: holds nothing
        pod(None, {"cpu": "1"}),  # not scheduled yet
    ]
    assert node_capacities(nodes, pods) == [
        NodeCapacity("cpu", 4000, 8192, 110, UNLIMITED, True, False),
        NodeCapacity("gpu", 1000, 4096 - 1536, 8, 15, True, True),
    ]


def test_requests_of_counts_init_containers_overhead_and_limits_as_requests() -> None:
    spec = {
        "containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "3"}}}],
        "overhead": {"cpu": "100m"},
    }
    assert requests_of({"spec": spec}) == (3100, 1024, 0)


def test_model_pods_tolerate_only_the_gpu_and_preloaded_images_taints() -> None:
    assert taints_tolerated([{"key": c.TAINT_GPU, "effect": "NoSchedule"}])
    assert taints_tolerated([{"key": "other", "effect": "PreferNoSchedule"}])
    assert taints_tolerated([{"key": c.TAINT_PRELOADED_IMAGES, "effect": "NoSchedule"}])
    assert not taints_tolerated([{"key": c.TAINT_GPU, "effect": "NoExecute"}])
    assert not taints_tolerated([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    tainted = node("t", {"cpu": "1"}, taints=[{"key": "dedicated", "effect": "NoSchedule"}])
    assert node_capacities([tainted])[0].tolerated is False


def test_a_node_that_pulls_nothing_is_tolerated_and_lists_what_it_holds() -> None:
    preloaded = {"key": c.TAINT_PRELOADED_IMAGES, "value": "true", "effect": "NoSchedule"}
    held = node("c", {"cpu": "2"}, taints=[preloaded])
    held["status"]["images"] = [
        {"names": ["ghcr.io/o/model-pod@sha256:ab", "ghcr.io/o/model-pod:1"], "sizeBytes": 9},
        {"names": ["python:3.11"]},
        {"sizeBytes": 1},  # a kubelet may list an image without names
    ]
    assert node_images(held) == {
        "ghcr.io/o/model-pod@sha256:ab",
        "ghcr.io/o/model-pod:1",
        "docker.io/library/python:3.11",
    }
    (capacity,) = node_capacities([held])
    assert capacity.tolerated is True and capacity.images == node_images(held)
    # A node without the taint pulls what it needs: its list does not limit anything.
    plain = node("p", {"cpu": "2"})
    plain["status"]["images"] = held["status"]["images"]
    assert node_capacities([plain])[0].images is None
    # Tainted, and it holds nothing: nothing may go there.
    assert node_capacities([node("e", {}, taints=[preloaded])])[0].images == frozenset()


def test_only_a_pod_pinned_to_its_node_tolerates_the_preloaded_images_taint() -> None:
    pinned = {t["key"] for t in model_pod_tolerations(pinned=True)}
    assert pinned == {c.TAINT_GPU, c.TAINT_PRELOADED_IMAGES}
    assert {t["key"] for t in model_pod_tolerations(pinned=False)} == {c.TAINT_GPU}


def test_nodes_not_advertised_are_not_counted() -> None:
    bare = node("bare", {})
    assert node_capacities([bare]) == [
        NodeCapacity("bare", UNLIMITED, UNLIMITED, UNLIMITED, UNLIMITED, True, False)
    ]


def test_refusals_gather_the_schedulers_words_and_the_carried_nodes() -> None:
    def model_pod(name: str, node_name: str, **extra: Any) -> dict[str, Any]:
        meta = {"name": name, "annotations": {c.ANNOTATION_PLANNED_NODE: node_name}}
        return {"metadata": meta, **extra}

    said = "0/3 nodes are available: 1 Insufficient cpu."
    pending = model_pod(
        "new",
        "gpu-1",
        status={
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": said,
                }
            ]
        },
    )
    carried = model_pod("old", "gpu-0")
    carried["metadata"]["annotations"].update(avoid_annotation(["gpu-2"]))
    assert unschedulable(pending) == said and unschedulable(carried) is None
    assert refusals([carried, pending]) == Refusals(frozenset({"gpu-1", "gpu-2"}), said, "new")
    assert refusals([carried]) == Refusals(frozenset({"gpu-2"}))
    assert avoid_annotation([]) == {}
