"""A selection's Service and the parsing of its EndpointSlices (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from fovea.domain import constants as c
from fovea.domain.endpoints import (
    Endpoint,
    build_service,
    endpoints_by_service,
    service_changes,
    service_name,
    service_url,
    serving_model,
    slice_endpoints,
)


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("object-detection", "object-detection"),
        ("3d-tracking", "m-3d-tracking"),
        ("a.b", "m-a-b"),
    ],
)
def test_service_name_is_a_dns_1035_label(selection: str, expected: str) -> None:
    assert service_name(selection) == expected


def test_long_names_stay_distinct_and_short() -> None:
    a, b = "9" + "x" * 80, "9" + "x" * 79 + "y"
    assert service_name(a) != service_name(b)
    assert len(service_name(a)) <= 63
    assert service_name(a)[0].isalpha()


def test_service_url_names_the_namespace_and_port() -> None:
    assert service_url("object-detection", "team-a") == ("http://object-detection.team-a.svc:8080")


def _pod(model: str, ready: bool, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {c.LABEL_MODEL: model}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = "True" if ready else "False"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": status}]}}


def test_the_wanted_model_serves_once_one_of_its_pods_is_ready() -> None:
    pods = [_pod("yolov8n", ready=True), _pod("yolov8s", ready=True)]
    assert serving_model("yolov8s", pods, current="yolov8n") == "yolov8s"


def test_the_current_model_serves_while_the_new_one_loads() -> None:
    pods = [_pod("yolov8n", ready=True), _pod("yolov8s", ready=False)]
    assert serving_model("yolov8s", pods, current="yolov8n") == "yolov8n"


def test_a_terminating_pod_does_not_hold_the_selector() -> None:
    pods = [_pod("yolov8n", ready=True, terminating=True), _pod("yolov8s", ready=False)]
    assert serving_model("yolov8s", pods, current="yolov8n") == "yolov8s"


def test_no_ready_pod_at_all_selects_the_wanted_model() -> None:
    assert serving_model("yolov8s", [], current=None) == "yolov8s"
    assert serving_model("yolov8s", [], current="yolov8n") == "yolov8s"


def test_the_service_selects_one_model_of_its_selection_and_is_owned() -> None:
    svc = build_service("object-detection", "ns", "uid-1", "object_detection", "yolov8n")
    assert svc["spec"]["selector"] == {
        c.LABEL_COMPONENT: c.COMPONENT_MODEL_POD,
        c.LABEL_SELECTION: "object-detection",
        c.LABEL_MODEL: "yolov8n",
    }
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    owner = svc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelSelection", "uid-1", True)


def test_a_service_is_rewritten_only_when_its_selector_changes() -> None:
    svc = build_service("od", "ns", "u", "object_detection", "yolov8n")
    stored = {**svc, "spec": {**svc["spec"], "clusterIP": "10.0.0.1"}}  # the server's fields
    assert not service_changes(stored, svc)
    moved = build_service("od", "ns", "u", "object_detection", "yolov8s")
    assert service_changes(stored, moved)
    assert service_changes(None, svc)


def _slice(service: str, endpoints: list[dict[str, Any]], port: int = 8080) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"kubernetes.io/service-name": service}},
        "ports": [{"name": "http", "port": port}],
        "endpoints": endpoints,
    }


def test_slices_parse_into_endpoints_with_their_conditions() -> None:
    raw = _slice(
        "od",
        [
            {
                "addresses": ["127.1.0.2"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {"kind": "Pod", "name": "pod-a"},
            },
            {
                "addresses": ["127.1.0.3"],
                "conditions": {"ready": False, "serving": True, "terminating": True},
                "targetRef": {"kind": "Pod", "name": "pod-b"},
            },
            {"addresses": ["fd00::1"], "targetRef": {"name": "pod-c"}},  # unset: ready
        ],
    )
    service, eps = slice_endpoints(raw)
    assert service == "od"
    assert eps[0] == Endpoint("pod-a", "127.1.0.2", 8080, True, True, False)
    assert eps[1].terminating and eps[1].serving and not eps[1].ready
    assert eps[2].ready and eps[2].url == "http://[fd00::1]:8080"
    assert eps[0].url == "http://127.1.0.2:8080"


def test_a_service_split_over_slices_is_merged_and_a_slice_without_the_port_is_empty() -> None:
    a = _slice("od", [{"addresses": ["10.0.0.1"], "targetRef": {"name": "p1"}}])
    b = _slice("od", [{"addresses": ["10.0.0.2"], "targetRef": {"name": "p2"}}])
    other = {**_slice("tr", [{"addresses": ["10.0.0.3"]}]), "ports": [{"name": "grpc", "port": 1}]}
    merged = endpoints_by_service([a, b, other])
    assert [e.pod for e in merged["od"]] == ["p1", "p2"]
    assert merged["tr"] == ()
