"""POST /api/models/validate with task_type/model_name pairs, against the real API server."""

from __future__ import annotations

from typing import Any

import pytest

from api_builders import examples_catalog
from api_server import ApiServer
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration


def test_what_if_answers_after_the_change_with_a_plan_and_writes_nothing(
    kube: Kube, api: ApiServer
) -> None:
    kube.apply_catalog(examples_catalog())
    kube.select("object_detection", "yolov8n")

    def selected() -> dict[str, Any] | None:
        body: dict[str, Any] = api.http.post("/api/models/validate").json()
        return body if "object_detection" in body.get("model_requirements", {}) else None

    plain = eventually(selected, 10)
    assert plain is not None
    assert "plan" not in plain and "what_if" not in plain  # without parameters: the contract's
    version = kube.selection("object_detection")["metadata"]["resourceVersion"]

    for params in (
        "task_type=object_detection&model_name=groundingdino"
        "&task_type=video_summarization&model_name=llama-4-scout",
        "taskType=object_detection&modelName=groundingdino"
        "&taskType=video_summarization&modelName=llama-4-scout",
    ):
        resp = api.http.post(f"/api/models/validate?{params}")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model_requirements"]["object_detection"]["model_name"] == "groundingdino"
        assert body["model_requirements"]["video_summarization"]["model_name"] == "llama-4-scout"
        assert body["valid"] is True

        # The plan covers the whole cluster: other namespaces' models hold GPUs too.
        def ours(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in rows if r["key"].startswith(f"{kube.namespace}/")]

        planned = ours([m for g in body["plan"]["gpus"] for m in g["models"]])
        assert {m["model"] for m in planned} == {"groundingdino", "llama-4-scout"}
        assert ours(body["plan"]["evicted"]) == [] and ours(body["plan"]["cpu"]) == []

    # Nothing was written: the selection is as it was, and no other was created.
    assert kube.selection("object_detection")["metadata"]["resourceVersion"] == version
    assert [s["spec"]["task"] for s in kube.selections()] == ["object_detection"]

    odd = api.http.post("/api/models/validate?task_type=object_detection")
    assert odd.status_code == 400
    assert odd.json() == {
        "error": "task_type and model_name come in pairs: 1 task_type, 0 model_name"
    }
    unknown = api.http.post("/api/models/validate?task_type=nope&model_name=x")
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "Invalid task_type: nope"}
