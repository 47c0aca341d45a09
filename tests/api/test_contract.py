"""Every documented request and error of the contract, against the real API server.

These tests play the operator and the model pods themselves (they patch the
status a real operator and pod would write), so each documented body can be
checked exactly; tests/api/test_wait.py runs the real operator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api_builders import examples_catalog
from api_server import ApiServer
from fovea.domain.gpus import gpus_from_nodes
from fovea.domain.resources import selection_name
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration


def cluster_gpu_gib(kube: Kube) -> float:
    nodes = kube.api.sanitize_for_serialization(kube.core.list_node().items)
    return round(sum(g.memory_gib for g in gpus_from_nodes(nodes)), 3)


def spec(kube: Kube, task: str) -> dict[str, Any]:
    return dict(kube.selection(task)["spec"])


@pytest.fixture
def catalog(kube: Kube) -> dict[str, Any]:
    body = examples_catalog()
    kube.apply_catalog(body)
    return body


def test_config_is_the_catalog_with_the_current_selections(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    kube.select("video_summarization", "llama-4-scout")
    kube.select("object_detection", "yolov8n")

    def config() -> dict[str, Any] | None:
        body: dict[str, Any] = api.http.get("/api/models/config").json()
        selected = [
            body["models"][t]["selected"] for t in ("video_summarization", "object_detection")
        ]
        return body if selected == ["llama-4-scout", "yolov8n"] else None

    body = eventually(config, 10)
    assert body is not None
    assert set(body["models"]) == {"video_summarization", "object_detection", "object_tracking"}
    assert body["models"]["object_tracking"]["selected"] is None
    assert body["models"]["video_summarization"]["options"]["llama-4-maverick"] == {
        "model_id": "meta-llama/Llama-4-Maverick",
        "framework": "vllm",
        "vram_gb": 16.0,
        "speed": "medium",
        "description": "High-quality VLM",
        "fps": 1.2,
    }
    assert body["models"]["object_detection"]["options"]["groundingdino"] == {
        "model_id": "IDEA-Research/grounding-dino-base",
        "framework": "pytorch",  # the CRD's default, stored with the catalog
        "vram_mb": 2048,
        "speed": "medium",
        "description": "Zero-shot detection",
    }
    assert body["inference"] == {
        "max_memory_per_model": 24.0,
        "offload_threshold": 0.8,
        "warmup_on_startup": True,
        "default_batch_size": 1,
        "max_batch_size": 8,
    }
    # The local cluster's GPUs are simulated, and say so: no CUDA device really exists.
    assert body["cuda_available"] is False
    assert body["total_vram_gb"] == cluster_gpu_gib(kube)
    assert body["simulated_gpu"] is True
    assert body["simulated_vram_gb"] == cluster_gpu_gib(kube)


@pytest.mark.parametrize(
    "query",
    [
        "task_type=video_summarization&model_name=llama-4-scout",
        "taskType=video_summarization&modelName=llama-4-scout",
    ],
)
def test_select_answers_the_documented_body_in_both_spellings(
    kube: Kube, catalog: dict[str, Any], api: ApiServer, query: str
) -> None:
    response = api.http.post(f"/api/models/select?{query}")
    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "task_type": "video_summarization",
        "selected_model": "llama-4-scout",
        "model_id": "meta-llama/Llama-4-Scout",
        "message": "Model selection updated",
    }
    stored = kube.selection("video_summarization")
    assert stored["metadata"]["name"] == selection_name("video_summarization")
    assert stored["spec"]["task"] == "video_summarization"
    assert stored["spec"]["model"] == "llama-4-scout"
    assert stored["spec"]["wanted"] is True
    # Read-your-writes: the next /config already shows it.
    config = api.http.get("/api/models/config").json()
    assert config["models"]["video_summarization"]["selected"] == "llama-4-scout"


def test_select_switches_an_existing_selection_and_keeps_its_other_fields(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    kube.select("object_detection", "yolov8n", priority=500, device_policy="gpu")
    before = kube.selection("object_detection")["metadata"]["generation"]
    response = api.http.post("/api/models/select?task_type=object_detection&model_name=yolov8m")
    assert response.status_code == 200
    assert response.json()["model_id"] == "yolov8m"
    after = kube.selection("object_detection")
    assert after["spec"]["model"] == "yolov8m"
    assert after["spec"]["priority"] == 500
    assert after["spec"]["devicePolicy"] == "gpu"
    assert after["metadata"]["generation"] > before


def test_select_of_an_unknown_task_is_400_and_changes_nothing(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    response = api.http.post("/api/models/select?task_type=invalid_task&model_name=yolov8n")
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid task_type: invalid_task"}
    assert kube.selections() == []


def test_select_of_an_unknown_model_is_404_and_changes_nothing(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    kube.select("video_summarization", "llama-4-scout")
    response = api.http.post(
        "/api/models/select?task_type=video_summarization&model_name=nonexistent-model"
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": "Model 'nonexistent-model' not found for task 'video_summarization'"
    }
    assert spec(kube, "video_summarization")["model"] == "llama-4-scout"


def test_select_without_its_parameters_is_a_clear_400(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    response = api.http.post("/api/models/select?task_type=object_detection")
    assert response.status_code == 400
    assert response.json() == {"error": "Missing required parameter: model_name"}
    assert kube.selections() == []


def ready_status(
    pod: str | None, model_id: str, gib: float, load_s: float, node: str
) -> dict[str, Any]:
    """What the operator and a model pod write once a model is loaded."""
    runtime: dict[str, Any] = {
        "state": "Ready",
        "modelId": model_id,
        "device": "cuda:0",
        "simulatedGpu": True,
        "measuredMemoryGb": gib,
        "loadTimeSeconds": load_s,
    }
    if pod:
        runtime["pod"] = pod
    return {
        "phase": "Ready",
        "modelId": model_id,
        "node": node,
        "gpuIndex": 0,
        "device": "cuda:0",
        "runtime": runtime,
    }


def test_status_reports_what_the_model_pods_measured(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    kube.select("video_summarization", "llama-4-scout")
    kube.select("object_detection", "yolov8n")
    kube.select("object_tracking", "samurai")
    kube.patch_status(
        "video_summarization",
        ready_status(None, "meta-llama/Llama-4-Scout", 7.8, 12.5, "fovea-gpu-0"),
    )
    kube.patch_status("object_detection", ready_status(None, "yolov8n", 0.5, 0.8, "fovea-gpu-0"))
    kube.patch_status("object_tracking", {"phase": "Loading", "runtime": {"state": "Loading"}})

    def status() -> dict[str, Any] | None:
        body: dict[str, Any] = api.http.get("/api/models/status").json()
        return body if len(body["loaded_models"]) == 2 else None

    body = eventually(status, 10)
    assert body is not None
    assert body["loaded_models"]["video_summarization"] == {
        "model_id": "meta-llama/Llama-4-Scout",
        "memory_usage_gb": 7.8,
        "load_time": 12.5,
        "device": "cuda:0",
        "node": "fovea-gpu-0",
        "pod": None,
        "simulated_gpu": True,
        "random_weights": False,
        "measured": True,
        "degraded": None,
        "allocated_device": None,
        "endpoint": None,  # this test writes statuses itself: no operator named one
    }
    assert body["loaded_models"]["object_detection"]["memory_usage_gb"] == 0.5
    assert body["loaded_models"]["object_detection"]["load_time"] == 0.8
    assert body["total_vram_allocated_gb"] == 8.3
    assert body["total_vram_available_gb"] == cluster_gpu_gib(kube)
    # Their pods claim cuda:0, but on a simulated GPU node: the real device is the CPU.
    assert body["cuda_available"] is False
    assert body["device"] == "cpu"
    assert body["simulated_gpu"] is True


def test_a_ready_report_of_a_pod_that_does_not_exist_is_not_a_loaded_model(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    kube.select("object_detection", "yolov8n")
    kube.patch_status(
        "object_detection", ready_status("gone-pod", "yolov8n", 0.5, 0.8, "fovea-gpu-0")
    )
    # A control written after it: a ready report without a pod is a loaded model. The API's
    # watch delivers the selections in order, so once the control shows, the report of the
    # missing pod has reached the API too.
    kube.select("video_summarization", "llama-4-scout")
    kube.patch_status(
        "video_summarization",
        ready_status(None, "meta-llama/Llama-4-Scout", 7.8, 12.5, "fovea-gpu-0"),
    )

    def loaded() -> dict[str, Any] | None:
        models: dict[str, Any] = api.http.get("/api/models/status").json()["loaded_models"]
        return models if "video_summarization" in models else None

    assert set(eventually(loaded, 10, what="the control's report in /api/models/status")) == {
        "video_summarization"
    }


def test_validate_has_every_documented_field(
    kube: Kube, catalog: dict[str, Any], api_factory: Callable[..., ApiServer]
) -> None:
    # This namespace alone: other tests' models (their namespaces still being deleted) must
    # not change the verdict this test checks.
    api = api_factory(cluster_wide=False)
    api.wait_ready()
    kube.select("video_summarization", "llama-4-maverick")
    kube.select("object_detection", "yolov8s")
    kube.select("object_tracking", "bytetrack")
    eventually(lambda: len(api.http.post("/api/models/validate").json()["model_requirements"]) == 3)
    body = api.http.post("/api/models/validate").json()
    assert body["valid"] is True
    assert body["total_vram_gb"] == cluster_gpu_gib(kube)
    assert body["threshold"] == 0.8
    assert body["model_requirements"] == {
        "video_summarization": {"model_name": "llama-4-maverick", "vram_gb": 16.0},
        "object_detection": {"model_name": "yolov8s", "vram_gb": 1.5},
        "object_tracking": {"model_name": "bytetrack", "vram_gb": 0.25},
    }
    assert body["total_required_gb"] == 17.75  # the one rounding rule: two decimals (docs/api.md)
    assert body["max_allowed_gb"] == pytest.approx(body["total_vram_gb"] * 0.8, abs=0.05)
    assert body["warnings"] == []
    # Extras: the operator's plan, per task and per GPU.
    placements = body["placements"]
    assert {p["outcome"] for p in placements.values()} == {"gpu"}
    assert sum(len(g["tasks"]) for g in body["gpus"]) == 3


def test_validate_of_a_selection_that_fits_no_gpu_is_invalid_with_the_documented_warnings(
    kube: Kube, api: ApiServer
) -> None:
    catalog = examples_catalog()
    catalog["tasks"]["video_summarization"]["options"]["giant"] = {
        "modelId": "giant/vlm",
        "vramGb": 500.0,
    }
    kube.apply_catalog(catalog)
    kube.select("video_summarization", "giant")

    # The API reads the catalog and the selection from its watch: they arrive a moment later
    # (before they do, /validate answers 500 "ModelCatalog 'default' not found").
    def validated() -> dict[str, Any] | None:
        body: dict[str, Any] = api.http.post("/api/models/validate").json()
        return body if len(body.get("model_requirements", [])) == 1 else None

    body = eventually(validated, 30)
    assert body is not None, api.http.post("/api/models/validate").text
    assert body["valid"] is False
    total = body["total_vram_gb"]
    assert (
        f"Total required VRAM (500.0 GB) exceeds available VRAM ({total:.1f} GB)"
        in body["warnings"]
    )
    assert "Consider selecting smaller models or reducing simultaneous tasks" in body["warnings"]
    assert body["placements"]["video_summarization"]["outcome"] == "unschedulable"


def test_load_and_unload_change_only_what_they_say(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    kube.select("object_detection", "yolov8n", load_policy="onDemand")
    assert spec(kube, "object_detection").get("wanted") in (None, False)
    eventually(
        lambda: api.http.get("/api/models/config").json()["models"]["object_detection"]["selected"]
    )
    loaded = api.http.post("/api/models/load/object_detection")
    assert loaded.status_code == 200
    assert loaded.json() == {
        "status": "success",
        "task_type": "object_detection",
        "model_name": "yolov8n",
        "model_id": "yolov8n",
        "message": "Model load requested",
    }
    assert spec(kube, "object_detection")["wanted"] is True
    unloaded = api.http.post("/api/models/unload/object_detection")
    assert unloaded.status_code == 200
    assert unloaded.json()["message"] == "Model unload requested"
    after = spec(kube, "object_detection")
    assert after["wanted"] is False
    assert after["loadPolicy"] == "onDemand"
    assert after["model"] == "yolov8n"  # the selection stays


def test_load_errors(kube: Kube, catalog: dict[str, Any], api: ApiServer) -> None:
    unknown = api.http.post("/api/models/load/invalid_task")
    assert (unknown.status_code, unknown.json()) == (
        400,
        {"error": "Invalid task_type: invalid_task"},
    )
    none = api.http.post("/api/models/unload/object_tracking")
    assert (none.status_code, none.json()) == (
        400,
        {"error": "No model selected for task 'object_tracking'"},
    )
    assert kube.selections() == []


def test_events_stream_selection_changes(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    seen: list[str] = []
    with api.http.stream("GET", "/api/models/events") as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("id: ")
        assert next(lines) == "event: sync"
        api_select = httpx_post(
            api, "/api/models/select?task_type=object_detection&model_name=yolov8l"
        )
        for line in lines:
            seen.append(line)
            if line.startswith("data: ") and '"model":"yolov8l"' in line:
                break
    assert "event: selection" in seen
    assert api_select.status_code == 200


def httpx_post(api: ApiServer, path: str) -> httpx.Response:
    """A POST on a second connection (the first is busy streaming)."""
    with httpx.Client(base_url=api.url, timeout=30) as other:
        return other.post(path)


def test_metrics_expose_latency_and_memory(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    kube.select("object_detection", "yolov8n")
    kube.patch_status("object_detection", ready_status(None, "yolov8n", 0.5, 0.8, "fovea-gpu-0"))
    eventually(lambda: api.http.get("/api/models/status").json()["loaded_models"], 10)
    text = api.http.get("/metrics").text
    assert (
        'fovea_api_request_duration_seconds_count{method="GET",route="/api/models/status",status="200"}'
        in text
    )
    assert "fovea_api_cache_synced 1.0" in text
    assert 'fovea_model_memory_gb{device="cuda:0",model_id="yolov8n",node="fovea-gpu-0"' in text
    assert 'fovea_gpu_memory_total_gb{gpu="0",node="fovea-gpu-0"}' in text
    assert 'fovea_gpu_memory_allocated_gb{gpu="0",node="fovea-gpu-0"} 0.5' in text
