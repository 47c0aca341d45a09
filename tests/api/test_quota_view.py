"""/validate and /status show the namespace's GPU-memory quota and its use (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from api_builders import CONTRACT_CATALOG, examples_catalog, gpu_node, selection
from api_server import ApiServer
from fovea.api.quota_view import quota_view
from fovea.api.responses import GpuView, status_body
from fovea.api.schemas import StatusBody
from fovea.api.state import Selection, build_state
from fovea.domain import constants as c
from fovea.domain.gpus import gpus_from_nodes
from kube_testing import Kube, eventually


def placed(task: str, model: str, gb: float, phase: str = "Ready") -> Selection:
    status = {
        "phase": phase,
        "model": model,
        "node": "gpu-0",
        "gpuIndex": 0,
        "declaredMemoryGb": gb,
        "observedGeneration": 1,
    }
    return selection(task, model, status=status)


def over_quota(task: str, model: str) -> Selection:
    message = "Namespace 'default' has a GPU-memory quota of 3.0 GB and ..."
    status = {
        "phase": "Unschedulable",
        "model": model,
        "message": message,
        "observedGeneration": 1,
        "conditions": [
            {"type": "Scheduled", "status": "False", "reason": "QuotaExceeded", "message": message}
        ],
    }
    return selection(task, model, status=status)


def state_with(annotations: dict[str, str] | None, *selections: Selection) -> Any:
    namespace = {"metadata": {"name": "default", "annotations": annotations or {}}}
    node = gpu_node("gpu-0")
    catalog = {"default": {"metadata": {"name": "default"}, "spec": CONTRACT_CATALOG}}
    return build_state(
        "default",
        "default",
        catalog,
        {s.name: s for s in selections},
        {"gpu-0": node},
        {},
        namespace_object=namespace,
    )


def test_no_annotation_no_quota() -> None:
    assert quota_view(state_with(None, placed("object_detection", "yolo", 2.0))) is None


def test_quota_and_use_from_the_operators_decisions() -> None:
    state = state_with(
        {c.ANNOTATION_GPU_MEMORY_QUOTA: "3Gi", c.ANNOTATION_MAX_PRIORITY: "200"},
        placed("object_detection", "a", 2.0),
        placed("object_tracking", "b", 0.5, phase="Loading"),
        over_quota("video_summarization", "c"),
    )
    assert quota_view(state) == {
        "namespace": "default",
        "gpu_memory_quota_gb": 3.0,
        "max_priority": 200,
        "used_gb": 2.5,
        "available_gb": 0.5,
        "quota_exceeded": ["video_summarization"],
        "problem": None,
    }


def test_status_carries_the_quota_and_matches_its_schema() -> None:
    state = state_with({c.ANNOTATION_GPU_MEMORY_QUOTA: "8"}, placed("object_detection", "a", 2.0))
    gpus = GpuView(tuple(gpus_from_nodes(list(state.nodes))), simulated=True)
    body = status_body(state, gpus)
    assert body["quota"]["gpu_memory_quota_gb"] == 8.0 and body["quota"]["used_gb"] == 2.0
    StatusBody.model_validate(body)


def test_an_annotation_that_does_not_parse_is_reported() -> None:
    view = quota_view(state_with({c.ANNOTATION_GPU_MEMORY_QUOTA: "lots"}))
    assert view is None  # no cap applies: the operator's default is not visible here
    view = quota_view(
        state_with({c.ANNOTATION_GPU_MEMORY_QUOTA: "lots", c.ANNOTATION_MAX_PRIORITY: "5"})
    )
    assert view is not None and view["problem"] and "lots" in view["problem"]


# --- against the real API server: the namespace's annotations are watched -------------------


@pytest.mark.integration
def test_validate_and_status_follow_the_namespace_annotation(kube: Kube, api: ApiServer) -> None:
    kube.apply_catalog(examples_catalog())
    kube.core.patch_namespace(
        kube.namespace, {"metadata": {"annotations": {c.ANNOTATION_GPU_MEMORY_QUOTA: "6Gi"}}}
    )

    def quota(path: str, gb: float) -> dict[str, Any] | None:
        response = api.http.post(path) if path.endswith("validate") else api.http.get(path)
        body: dict[str, Any] | None = response.json().get("quota")
        return body if body and body["gpu_memory_quota_gb"] == gb else None

    validated = eventually(lambda: quota("/api/models/validate", 6.0), 10)
    assert validated is not None
    assert validated["namespace"] == kube.namespace and validated["used_gb"] == 0.0
    kube.core.patch_namespace(
        kube.namespace, {"metadata": {"annotations": {c.ANNOTATION_GPU_MEMORY_QUOTA: "12"}}}
    )
    assert eventually(lambda: quota("/api/models/status", 12.0), 10)
