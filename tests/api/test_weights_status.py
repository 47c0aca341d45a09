"""The `loading` section of /api/models/status and the weights part of SSE events (pure)."""

from __future__ import annotations

from typing import Any

from api_builders import runtime_ready, selection, state
from fovea.api.cache import Change
from fovea.api.events import selection_data
from fovea.api.loading_view import loading_section
from fovea.api.schemas import StatusBody

FETCHING = {
    "phase": "Fetching",
    "source": "s3://models/yolo",
    "bytesDone": 300,
    "bytesTotal": 1000,
    "bytesPerSecond": 50.0,
    "fetchedBytes": 300,
    "updatedAt": "2026-01-01T00:00:05Z",
}
READY_FALSE = {
    "type": "Ready",
    "status": "False",
    "reason": "WeightsFetching",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}


def _loading(weights: dict[str, Any] | None, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "phase": "Loading",
        "modelId": "yolov8n",
        "pod": "p-1",
        "node": "gpu-0",
        "message": "Pod p-1 is fetching",
        "conditions": [READY_FALSE],
        **status,
    }
    if weights is not None:
        body["weights"] = weights
    return body


def test_a_fetching_model_shows_bytes_rate_and_since() -> None:
    sel = selection("object_detection", "yolov8n", status=_loading(FETCHING))
    section = loading_section(state([sel]))
    assert section == {
        "object_detection": {
            "task": "object_detection",
            "model": "yolov8n",
            "model_id": "yolov8n",
            "phase": "fetching",
            "bytes_done": 300,
            "bytes_total": 1000,
            "bytes_per_second": 50.0,
            "weights": {
                "phase": "Fetching",
                "source": "s3://models/yolo",
                "revision": None,
                "sha256": None,
                "bytes_done": 300,
                "bytes_total": 1000,
                "bytes_per_second": 50.0,
                "fetched_bytes": 300,
                "message": None,
                "updated_at": "2026-01-01T00:00:05Z",
            },
            "message": "Pod p-1 is fetching",
            "pod": "p-1",
            "node": "gpu-0",
            "since": "2026-01-01T00:00:00Z",
        }
    }


def test_cached_weights_or_none_are_loading_and_ready_models_are_not_listed() -> None:
    cached = {**FETCHING, "phase": "Cached", "bytesDone": 1000, "fetchedBytes": 0}
    loading = selection("object_detection", "yolov8n", status=_loading(cached))
    plain = selection("caption", "blip", status=_loading(None))
    ready = selection(
        "ocr", "trocr", status={"phase": "Ready", "runtime": runtime_ready("p-2", "trocr", 1.0)}
    )
    failed = selection("depth", "dpt", status={"phase": "Failed", "weights": {"phase": "Failed"}})
    section = loading_section(state([loading, plain, ready, failed]))
    assert sorted(section) == ["caption", "object_detection"]
    assert section["object_detection"]["phase"] == "loading"
    assert section["object_detection"]["bytes_done"] is None
    assert section["object_detection"]["weights"]["fetched_bytes"] == 0
    assert section["caption"]["weights"] is None


def test_the_status_body_carries_loading_and_validates_against_its_schema() -> None:
    from fovea.api.responses import GpuView, status_body

    sel = selection("object_detection", "yolov8n", status=_loading(FETCHING))
    body = status_body(state([sel]), GpuView((), False))
    StatusBody.model_validate(body)
    assert body["loaded_models"] == {}  # the contract's fields are unchanged
    assert body["loading"]["object_detection"]["phase"] == "fetching"


def test_a_selection_event_carries_the_weights_progress() -> None:
    sel = selection("object_detection", "yolov8n", status=_loading(FETCHING))
    data = selection_data(Change("MODIFIED", sel))
    assert data["weights"]["bytes_done"] == 300 and data["weights"]["bytes_total"] == 1000
    plain = selection("caption", "blip", status=_loading(None))
    assert selection_data(Change("MODIFIED", plain))["weights"] is None


def test_the_board_shows_the_fetch_as_the_tasks_progress() -> None:
    from fovea.api import responses
    from fovea.api.board import board_body

    runtime = {"pod": "p-1", "state": "Loading", "weights": FETCHING}
    status = _loading({**FETCHING, "bytesDone": 256 * 1024, "bytesTotal": 1024**2})
    st = state([selection("object_detection", "yolov8n", status={**status, "runtime": runtime})])
    tasks = board_body(st, responses.gpu_view(st))["tasks"]
    [task] = [t for t in tasks if t["task"] == "object_detection"]
    assert task["progress"] == {
        "state": "Fetching",
        "reason": "fetching weights: 256.0 KB of 1.0 MB",
        "percent": 25.0,
    }
