"""What-if validation: the body after the change and the operator's plan (pure, no cluster)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from api_builders import CONTRACT_CATALOG, gpu_node, held_pod, selection, state
from fovea.api.errors import BadRequest, InvalidTaskType, ModelNotFound
from fovea.api.schemas import ValidateBody
from fovea.api.state import ClusterState, parse_selection
from fovea.api.what_if import pairs, what_if_body
from fovea.domain.resources import CatalogSpec

READY_ON_GPU0 = {"phase": "Ready", "node": "gpu-0", "gpuIndex": 0, "observedGeneration": 1}

NOW = 1_800_000_000.0  # the clock of /validate and the what-if route (leases, keepAlive)


def what_if(st: ClusterState, **changes: str) -> dict[str, Any]:
    body = what_if_body(st, changes, NOW)
    ValidateBody.model_validate(body)  # the contract's shape
    return body


def test_pairs_in_order_and_refuses_odd_or_conflicting_ones() -> None:
    assert pairs(["a", "b"], ["x", "y"]) == {"a": "x", "b": "y"}
    assert pairs(["a", "a"], ["x", "x"]) == {"a": "x"}
    with pytest.raises(BadRequest, match="come in pairs: 2 task_type, 1 model_name"):
        pairs(["a", "b"], ["x"])
    with pytest.raises(BadRequest, match="Conflicting values for task_type a: x, y"):
        pairs(["a", "a"], ["x", "y"])


def test_the_body_is_the_budget_after_the_change_with_the_plan_per_gpu() -> None:
    st = state([selection("object_detection", "yolov8n", status=READY_ON_GPU0)])
    body = what_if(st, object_detection="groundingdino", object_tracking="samurai")
    assert body["valid"] is True
    assert body["what_if"] == {"object_detection": "groundingdino", "object_tracking": "samurai"}
    assert body["model_requirements"]["object_detection"] == {
        "model_name": "groundingdino",
        "vram_gb": 2.0,
    }
    assert body["total_required_gb"] == 6.0
    [gpu] = body["plan"]["gpus"]
    assert (gpu["node"], gpu["index"], gpu["used_gb"]) == ("gpu-0", 0, 6.0)
    assert {m["model"] for m in gpu["models"]} == {"groundingdino", "samurai"}
    assert body["plan"]["evicted"] == [] and body["plan"]["cpu"] == []
    # The state itself is untouched: the what-if writes nothing, not even in memory.
    assert st.by_task["object_detection"].spec.model == "yolov8n"


def test_a_higher_priority_model_evicts_another_namespaces_model_and_says_for_whom() -> None:
    holder = parse_selection(
        {
            "metadata": {"name": "summary", "namespace": "team-a", "uid": "uid-team-a-summary"},
            "spec": {"task": "summary", "model": "big", "priority": 10},
            "status": {"declaredMemoryGb": 16.0, **READY_ON_GPU0},
        }
    )
    assert holder is not None
    big = {"tasks": {"summary": {"options": {"big": {"modelId": "big", "vramGb": 16.0}}}}}
    st = dataclasses.replace(
        state([selection("video_summarization", None, priority=500)]),
        peers={"team-a/summary": holder},
        cluster_wide=True,
        catalogs={
            **state().catalogs,
            ("team-a", "default"): CatalogSpec.model_validate(big),
        },
        model_pods=(held_pod(holder, "gpu-0", 0, "team-a"),),
    )
    body = what_if(st, video_summarization="llama-4-maverick")
    [evicted] = body["plan"]["evicted"]
    assert evicted["key"] == "team-a/summary"
    assert evicted["from"] == "gpu-0 GPU 0"
    assert [m["model"] for m in evicted["for"]] == ["llama-4-maverick"]
    assert "priority 500 over 10" in evicted["reason"]
    [gpu] = body["plan"]["gpus"]
    assert [m["key"] for m in gpu["models"]] == ["default/video-summarization"]


def test_a_model_too_big_for_the_gpus_falls_back_to_the_cpu_in_the_plan() -> None:
    catalog = copy.deepcopy(CONTRACT_CATALOG)
    maverick = catalog["tasks"]["video_summarization"]["options"]["llama-4-maverick"]
    maverick["cpuMemoryGb"] = 32
    st = state([], nodes=[gpu_node("gpu-0", memory_mib=8192)], catalog=catalog)
    body = what_if(st, video_summarization="llama-4-maverick")
    assert body["valid"] is False
    [cpu] = body["plan"]["cpu"]
    assert cpu["task"] == "video_summarization" and cpu["model"] == "llama-4-maverick"
    assert cpu["reason"]


def test_unknown_tasks_and_models_are_refused() -> None:
    st = state([])
    with pytest.raises(InvalidTaskType):
        what_if(st, nope="x")
    with pytest.raises(ModelNotFound):
        what_if(st, object_detection="nope")


def test_selecting_the_model_already_selected_keeps_its_gpu() -> None:
    status = {**READY_ON_GPU0, "model": "yolov8n"}
    st = state([selection("object_detection", "yolov8n", status=status)])
    body = what_if(st, object_detection="yolov8n")
    assert body["placements"]["object_detection"]["decided_by"] == "operator"
    assert body["plan"]["gpus"][0]["models"][0]["model"] == "yolov8n"


def test_a_model_held_on_its_planned_gpu_stays_there_in_the_plan() -> None:
    status = {"phase": "Ready", "model": "yolov8n", "node": "gpu-1", "plannedGpuIndex": 0}
    sel = selection("object_detection", "yolov8n", status=status)
    st = state(
        [sel], nodes=[gpu_node("gpu-0"), gpu_node("gpu-1")], pods=[held_pod(sel, "gpu-1", 0)]
    )
    body = what_if(st, object_tracking="bytetrack")
    held = {g["node"]: [m["model"] for m in g["models"]] for g in body["plan"]["gpus"]}
    assert held["gpu-1"][0] == "yolov8n"
    assert body["plan"]["moves"] == []
