"""manifests/monitoring: every metric the dashboard and the alerts use is exported by /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from api_builders import examples_catalog
from api_server import ApiServer
from kube_testing import Kube, eventually

MONITORING = Path(__file__).resolve().parents[2] / "manifests" / "monitoring"
METRIC = re.compile(r"\b(fovea_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def used_metrics() -> set[str]:
    exprs = [*dashboard_exprs(), *(r["expr"] for r in rules())]
    return {name for expr in exprs for name in METRIC.findall(expr)}


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    names = {r["alert"] for r in rules()}
    assert {"FoveaModelFailedToLoad", "FoveaGpuOverThreshold", "FoveaModelOnCpuFallback"} <= names
    assert "FoveaInferenceErrors" in names  # issue 23: sustained 5xx/429 of the inference route
    assert all(r.get("for") and r["annotations"]["summary"] for r in rules())
    assert len(used_metrics()) >= 6


def test_the_dashboard_shows_the_inference_route_on_a_grid_without_overlaps() -> None:
    panels = json.loads((MONITORING / "grafana-dashboard.json").read_text())["panels"]
    exprs = "\n".join(dashboard_exprs())
    for wanted in (  # issue 23: rate by task, model and code; latency p50/p99; queue; hold p99
        "sum by (task, model, code) (rate(fovea_inference_requests_total[",
        "histogram_quantile(0.5, sum by (le, task, model) "
        "(rate(fovea_inference_request_duration_seconds_bucket[",
        "histogram_quantile(0.99, sum by (le, task, model) "
        "(rate(fovea_inference_request_duration_seconds_bucket[",
        "sum by (task) (fovea_inference_queue_length)",
        "histogram_quantile(0.99, sum by (le, task) (rate(fovea_inference_hold_seconds_bucket[",
    ):
        assert wanted in exprs, wanted
    assert len({p["id"] for p in panels}) == len(panels)
    taken: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for cell in (
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        ):
            assert cell not in taken, (p["title"], taken.get(cell))
            taken[cell] = p["title"]


@pytest.mark.integration
def test_every_metric_of_the_dashboard_and_alerts_is_exported(kube: Kube, api: ApiServer) -> None:
    kube.apply_catalog(examples_catalog())
    nodes = kube.api.sanitize_for_serialization(kube.core.list_node().items)
    gpu_node = next(n["metadata"]["name"] for n in nodes if "gpu" in n["metadata"]["name"])
    for task, model, status in (
        (
            "object_detection",
            "yolov8n",
            {
                "phase": "Ready",
                "node": gpu_node,
                "plannedGpuIndex": 0,
                "runtime": {"state": "Ready", "modelId": "yolov8n", "measuredMemoryGb": 0.5},
            },
        ),
        ("object_tracking", "samurai", {"phase": "Failed", "message": "out of memory"}),
        ("video_summarization", "llama-4-scout", {"phase": "CPUFallback", "message": "no room"}),
    ):
        kube.select(task, model)
        kube.patch_status(task, status)

    def scrape() -> dict[str, set[str]] | None:
        text = api.http.get("/metrics").text
        samples: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(text):
            samples.setdefault(family.name, set())
            for s in family.samples:
                samples.setdefault(s.name, set()).add(s.labels.get("phase", ""))
        ready = "CPUFallback" in samples.get("fovea_selection_phase", set())
        return samples if ready and samples.get("fovea_model_memory_gb") else None

    assert eventually(scrape, 10) is not None
    # The inference route's series get samples: the Failed model's request is answered at once.
    resp = api.http.post("/api/models/predict/object_tracking", json={})
    assert resp.status_code == 503, resp.text
    exported = scrape()
    assert exported is not None
    missing = {
        name
        for name in used_metrics()
        if name not in exported
        and not any(name.endswith(s) and name[: -len(s)] in exported for s in HISTOGRAM_SUFFIXES)
    }
    assert missing == set()
    # The alerts' series have samples for the states they watch.
    assert {"Ready", "Failed", "CPUFallback"} <= exported["fovea_selection_phase"]
    assert exported["fovea_selection_degraded"]
    assert exported["fovea_gpu_memory_threshold_gb"] and exported["fovea_gpu_memory_allocated_gb"]
    families = text_string_to_metric_families(api.http.get("/metrics").text)
    answered = {
        (s.labels["task"], s.labels["code"])
        for family in families
        for s in family.samples
        if s.name == "fovea_inference_requests_total"
    }
    assert ("object_tracking", "503") in answered  # what FoveaInferenceErrors counts
