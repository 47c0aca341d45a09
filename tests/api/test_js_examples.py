"""The contract's four JavaScript usage examples, run by node against the live API."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from api_builders import examples_catalog
from api_server import ApiServer
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "js"


def node(script: str, api: ApiServer) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("node")
    assert binary, "node is not installed"
    return subprocess.run(
        [binary, str(EXAMPLES / script)],
        env={**os.environ, "FOVEA_API_URL": api.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture
def api(api_factory: Callable[..., ApiServer]) -> ApiServer:
    """The API of the test's namespace alone: the contract's examples judge one namespace, and
    other tests' models (in namespaces still being deleted) must not change their verdicts."""
    server = api_factory(cluster_wide=False)
    server.wait_ready()
    return server


@pytest.fixture
def catalog(kube: Kube) -> dict[str, Any]:
    body = examples_catalog()
    kube.apply_catalog(body)
    kube.select("object_detection", "yolov8n")
    return body


def wait_selected(api: ApiServer, model: str) -> None:
    assert eventually(
        lambda: (
            api.http.get("/api/models/config").json()["models"]["object_detection"]["selected"]
            == model
        ),
        10,
    )


def test_check_available_models(catalog: dict[str, Any], api: ApiServer) -> None:
    wait_selected(api, "yolov8n")
    out = node("check-available-models.mjs", api).stdout.splitlines()
    # Kubernetes stores a catalog's options as a map: they come back sorted by name.
    assert out == [
        "groundingdino: Zero-shot detection (2048 MB)",
        "yolov8l: YOLOv8 L (4096 MB)",
        "yolov8m: YOLOv8 M (2560 MB)",
        "yolov8n: Nano YOLO model (512 MB)",
        "yolov8s: YOLOv8 S (1536 MB)",
        "Current detection model: yolov8n",
    ]


def test_switch_to_different_model(kube: Kube, catalog: dict[str, Any], api: ApiServer) -> None:
    result = node("switch-model.mjs", api)
    assert result.stdout == "Model selected: yolov8m\n"
    assert kube.selection("object_detection")["spec"]["model"] == "yolov8m"


def test_switch_to_a_model_the_catalog_lacks_prints_the_error(
    kube: Kube, catalog: dict[str, Any], api: ApiServer
) -> None:
    del catalog["tasks"]["object_detection"]["options"]["yolov8m"]
    kube.apply_catalog(catalog)
    assert eventually(
        lambda: (
            "yolov8m"
            not in api.http.get("/api/models/config").json()["models"]["object_detection"][
                "options"
            ]
        ),
        10,
    )
    result = node("switch-model.mjs", api)
    assert result.stdout == ""
    assert result.stderr == (
        "Selection failed: Model 'yolov8m' not found for task 'object_detection'\n"
    )


def test_validate_before_selection(kube: Kube, catalog: dict[str, Any], api: ApiServer) -> None:
    kube.select("video_summarization", "llama-4-scout")
    assert eventually(
        lambda: len(api.http.post("/api/models/validate").json()["model_requirements"]) == 2, 10
    )
    total = api.http.post("/api/models/validate").json()["total_vram_gb"]
    result = node("validate-before-selection.mjs", api)
    assert result.stdout == f"Using 8.5 GB of {total:g} GB\n"


def test_validate_before_selection_warns_when_it_does_not_fit(kube: Kube, api: ApiServer) -> None:
    catalog = examples_catalog()
    catalog["tasks"]["video_summarization"]["options"]["giant"] = {
        "modelId": "giant/vlm",
        "vramGb": 500,
    }
    kube.apply_catalog(catalog)
    kube.select("video_summarization", "giant")
    assert eventually(lambda: api.http.post("/api/models/validate").json()["valid"] is False, 10)
    total = api.http.post("/api/models/validate").json()["total_vram_gb"]
    result = node("validate-before-selection.mjs", api)
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"Insufficient VRAM: Total required VRAM (500.0 GB) exceeds available VRAM ({total:.1f} GB)"
        ", Consider selecting smaller models or reducing simultaneous tasks"
    )


def test_monitor_memory_usage(kube: Kube, catalog: dict[str, Any], api: ApiServer) -> None:
    kube.select("video_summarization", "llama-4-scout")
    for task, model_id, gib in (
        ("video_summarization", "meta-llama/Llama-4-Scout", 7.8),
        ("object_detection", "yolov8n", 0.5),
    ):
        # What the operator and the model pod would report once loaded.
        kube.patch_status(
            task,
            {
                "phase": "Ready",
                "node": "fovea-gpu-0",
                "gpuIndex": 0,
                "device": "cuda:0",
                "runtime": {
                    "state": "Ready",
                    "modelId": model_id,
                    "device": "cuda:0",
                    "simulatedGpu": True,
                    "measuredMemoryGb": gib,
                    "loadTimeSeconds": 1.0,
                },
            },
        )
    assert eventually(
        lambda: len(api.http.get("/api/models/status").json()["loaded_models"]) == 2, 10
    )
    available = api.http.get("/api/models/status").json()["total_vram_available_gb"]
    percent = f"{8.3 / available * 100:.1f}"
    result = node("monitor-memory.mjs", api)
    assert result.stdout.splitlines() == [
        f"VRAM Usage: 8.3 GB / {available:g} GB ({percent}%)",
        "object_detection: yolov8n (0.5 GB)",
        "video_summarization: meta-llama/Llama-4-Scout (7.8 GB)",
    ]
