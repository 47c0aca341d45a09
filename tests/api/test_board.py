"""The GPU board at `/`: its data (pure) and the page in Debian's Chromium on the real API."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from board_browser import launch
from playwright.sync_api import Page, expect, sync_playwright

from api_builders import gpu_node, model_pod, runtime_ready, selection, state
from api_server import ApiServer
from fovea.api import responses
from fovea.api.board import board_body
from fovea.domain.gpus import gpus_from_nodes
from kube_testing import Kube, eventually

TASK = "object_detection"


def test_each_gpu_shows_its_models_declared_planned_and_measured_memory_and_threshold() -> None:
    loaded = {
        "phase": "Ready",
        "model": "yolov8n",
        "node": "gpu-0",
        "plannedGpuIndex": 0,
        "declaredMemoryGb": 0.5,
        "runtime": runtime_ready("p1", "yolov8n", 0.7),
    }
    loading = {
        "phase": "Loading",
        "model": "samurai",
        "node": "gpu-0",
        "plannedGpuIndex": 0,
        "declaredMemoryGb": 4.0,
        "runtime": {"state": "Loading", "reason": "downloading weights 42%"},
    }
    st = state(
        [
            selection(TASK, "yolov8n", status=loaded),
            selection("object_tracking", "samurai", status=loading),
        ],
        nodes=[gpu_node("gpu-0", simulated=True)],
    )
    body = board_body(st, responses.gpu_view(st))
    [gpu] = body["gpus"]
    assert (gpu["memory_gb"], gpu["threshold_gb"], gpu["simulated"]) == (24.0, 19.2, True)
    by_model = {m["model"]: m for m in gpu["models"]}
    assert by_model["yolov8n"]["declared_gb"] == 0.5
    assert by_model["yolov8n"]["measured_gb"] == 0.7
    assert by_model["samurai"]["measured_gb"] is None and by_model["samurai"]["planned"]
    tasks = {t["task"]: t for t in body["tasks"]}
    assert tasks["object_tracking"]["progress"] == {
        "state": "Loading",
        "reason": "downloading weights 42%",
        "percent": 42.0,
    }
    assert [o["name"] for o in tasks[TASK]["options"]] == ["yolov8n", "groundingdino"]
    assert tasks["video_summarization"]["selected"] is None


def test_each_task_shows_its_inference_endpoint_once_the_operator_names_it() -> None:
    endpoint = {
        "service": "fovea-det",
        "url": "http://fovea-det.ns.svc:8080",
        "route": f"/api/models/predict/{TASK}",
        "servingModel": "yolov8n",  # still the old model while groundingdino loads
    }
    switching = {"phase": "Loading", "model": "groundingdino", "endpoint": endpoint}
    st = state(
        [
            selection(TASK, "groundingdino", status=switching),
            selection("object_tracking", "samurai", status={"phase": "Pending"}),
        ]
    )
    tasks = {t["task"]: t for t in board_body(st, responses.gpu_view(st))["tasks"]}
    assert tasks[TASK]["endpoint"] == {
        "route": f"/api/models/predict/{TASK}",
        "service": "fovea-det",
        "serving_model": "yolov8n",
    }
    assert tasks["object_tracking"]["endpoint"] is None  # not named yet
    assert tasks["video_summarization"]["endpoint"] is None  # no selection


def test_a_model_on_the_cpu_for_want_of_memory_shows_as_degraded() -> None:
    status = {"phase": "CPUFallback", "model": "samurai", "message": "no GPU has room"}
    st = state([selection("object_tracking", "samurai", status=status)])
    [task] = [t for t in board_body(st, responses.gpu_view(st))["tasks"] if t["degraded"]]
    assert task["task"] == "object_tracking" and task["degraded"] == "no GPU has room"


# --- the page in a real browser -------------------------------------------------------------


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with sync_playwright() as pw:
        context = launch(pw, tmp_path / "chromium-profile")
        try:
            yield context.new_page()
        finally:
            context.close()


def cluster_gpus(kube: Kube) -> list[str]:
    nodes = kube.api.sanitize_for_serialization(kube.core.list_node().items)
    return sorted(f"{g.node}/{g.index}" for g in gpus_from_nodes(nodes))


HOLD_S = 20.0  # the test's held request waits this long, then answers 503


@pytest.mark.integration
def test_the_page_shows_gpus_and_selections_and_selects_through_the_api(
    kube: Kube, api_factory: Callable[..., ApiServer], page: Page
) -> None:
    from api_builders import examples_catalog

    api = api_factory(hold_seconds=HOLD_S)
    api.wait_ready()
    kube.apply_catalog(examples_catalog())
    kube.select(TASK, "yolov8n")
    gpus = cluster_gpus(kube)
    node, index = gpus[0].split("/")
    kube.patch_status(  # the operator's part, played here: yolov8n holds the first GPU
        TASK,
        {
            "phase": "Ready",
            "model": "yolov8n",
            "node": node,
            "plannedGpuIndex": int(index),
            "declaredMemoryGb": 0.5,
            "observedGeneration": 1,
            "endpoint": {
                "service": "fovea-object-detection",
                "url": "http://fovea-object-detection:8080",
                "route": f"/api/models/predict/{TASK}",
                "servingModel": "yolov8n",
            },
        },
    )
    assert eventually(lambda: _board(api)["tasks"][TASK]["phase"] == "Ready" or None, 10)

    page.goto(api.url + "/")
    expect(page.locator("#conn")).to_have_text("live")
    shown = page.locator(".gpu").evaluate_all("els => els.map(e => e.dataset.gpu)")
    assert sorted(shown) == gpus  # every GPU of the cluster, one bar each
    holder = page.locator(f'.gpu[data-gpu="{gpus[0]}"] .seg[data-model="yolov8n"]')
    expect(holder).to_have_count(1)
    expect(page.locator(".gpu .threshold")).to_have_count(len(gpus))
    row = page.locator(f'#tasks tr[data-task="{TASK}"]')
    expect(row.locator(".selected")).to_have_text("yolov8n")
    expect(row.locator(".phase")).to_contain_text("Ready")
    expect(row.locator(".endpoint")).to_have_text(f"POST /api/models/predict/{TASK}")
    expect(row.locator(".traffic")).to_have_text("0.00 req/s · queue 0")

    # Traffic beside each task, from GET /api/models/inference: a refused request counts
    # for its task; a request for the Ready model (whose pod has no endpoint here) is held.
    assert api.http.post("/api/models/predict/object_tracking", json={}).status_code == 409
    tracking = page.locator('#tasks tr[data-task="object_tracking"] .traffic')
    expect(tracking).to_have_text("0.02 req/s · queue 0")  # 1 answer in the last minute
    held: list[int] = []
    holder_thread = threading.Thread(
        target=lambda: held.append(
            api.http.post(f"/api/models/predict/{TASK}", json={}, timeout=HOLD_S + 30).status_code
        ),
    )
    holder_thread.start()
    expect(row.locator(".traffic .queue")).to_have_text("queue 1")

    row.locator(".model-choice").select_option("groundingdino")
    row.locator(".do-select").click()
    assert eventually(lambda: kube.selection(TASK)["spec"]["model"] == "groundingdino" or None, 10)
    expect(page.locator("#events li").filter(has_text=f"{TASK}: groundingdino")).not_to_have_count(
        0
    )
    expect(row.locator(".selected")).to_have_text("groundingdino")

    row.locator(".do-whatif").click()  # what-if from the page: the plan, nothing written
    expect(page.locator("#whatif")).to_contain_text("Nothing was changed.")

    holder_thread.join(HOLD_S + 60)
    assert held == [503]  # no model pod answered in time: the held request's 503 ...
    expect(row.locator(".traffic")).to_have_text("0.02 req/s · queue 0 · 1 error")  # ... counted


def _board(api: ApiServer) -> dict[str, Any]:
    body = api.http.get("/api/models/board").json()
    return {**body, "tasks": {t["task"]: t for t in body["tasks"]}}


def test_load_progress_is_the_current_pods_not_the_previous_ones() -> None:
    status = {
        "phase": "Loading",
        "model": "groundingdino",
        "pod": "new-pod",
        "runtime": runtime_ready("old-pod", "yolov8n", 0.5),
    }
    st = state([selection(TASK, "groundingdino", status=status)])
    [task] = [t for t in board_body(st, responses.gpu_view(st))["tasks"] if t["task"] == TASK]
    assert task["progress"] is None


def test_status_and_the_board_show_the_degraded_condition_and_the_gpu_it_wants() -> None:
    why = "on the CPU: no GPU has room; wants gpu-0 GPU 0 (4.0 GB) once memory frees"
    status = {
        "phase": "CPUFallback",
        "model": "samurai",
        "pod": "p1",
        "conditions": [
            {"type": "Degraded", "status": "True", "reason": "CPUFallback", "message": why}
        ],
        "runtime": runtime_ready("p1", "yangchris11/samurai", 3.5, device="cpu"),
    }
    st = state([selection("object_tracking", "samurai", status=status)], pods=[model_pod("p1")])
    body = responses.status_body(st, responses.gpu_view(st))
    assert body["loaded_models"]["object_tracking"]["degraded"] == why
    [task] = [t for t in board_body(st, responses.gpu_view(st))["tasks"] if t["degraded"]]
    assert task["degraded"] == why
