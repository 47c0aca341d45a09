"""Where a request for a task goes: the pure decision of the inference route."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from api_builders import runtime_ready, selection, state
from fovea.api.routing import Hold, Refuse, Serve, decide
from fovea.api.state import ClusterState, Selection, pod_models
from fovea.domain.endpoints import Endpoint

SVC = "object-detection"


def _ep(pod: str, ready: bool = True, terminating: bool = False) -> Endpoint:
    return Endpoint(pod, f"127.1.0.{len(pod)}", 8080, ready, ready or terminating, terminating)


def _world(
    sel: Selection | None, endpoints: list[Endpoint], models: dict[str, str]
) -> ClusterState:
    base = state([sel] if sel is not None else [])
    return replace(base, endpoints={SVC: tuple(endpoints)}, pod_models=models)


def _ready(model: str, model_id: str, pod: str, generation: int = 2) -> dict[str, Any]:
    return {
        "phase": "Ready",
        "model": model,
        "modelId": model_id,
        "pod": pod,
        "observedGeneration": generation,
        "runtime": runtime_ready(pod, model_id, 0.1),
    }


def _decide(world: ClusterState, task: str = "object_detection", **kw: Any) -> Any:
    return decide(world, task, world.endpoints, world.pod_models, **kw)


def test_an_unknown_task_is_404_and_names_the_known_ones() -> None:
    got = _decide(_world(None, [], {}), task="nope")
    assert isinstance(got, Refuse) and got.status == 404
    assert "nope" in got.message and "object_detection" in got.message


def test_a_task_without_a_selected_model_is_409_and_says_how_to_select() -> None:
    got = _decide(_world(selection("object_detection", None), [], {}))
    assert isinstance(got, Refuse) and got.status == 409
    assert "select" in got.message


def test_an_external_api_option_is_refused_with_4xx() -> None:
    catalog_world = _world(selection("object_detection", "yolov8n"), [], {})
    catalog = catalog_world.catalog
    assert catalog is not None
    option = catalog.tasks["object_detection"].options["yolov8n"]
    external = option.model_copy(update={"framework": "external_api"})
    tasks = dict(catalog.tasks)
    tasks["object_detection"] = tasks["object_detection"].model_copy(
        update={"options": {"yolov8n": external}}
    )
    world = replace(catalog_world, catalog=catalog.model_copy(update={"tasks": tasks}))
    got = _decide(world)
    assert isinstance(got, Refuse) and got.status == 422 and "external API" in got.message


def test_ready_endpoints_of_the_selected_model_serve() -> None:
    sel = selection("object_detection", "yolov8n", status=_ready("yolov8n", "yolov8n", "p1", 1))
    got = _decide(_world(sel, [_ep("p1"), _ep("p22", ready=False)], {"p1": "yolov8n"}))
    assert isinstance(got, Serve)
    assert [b.pod for b in got.backends] == ["p1"] and got.model == "yolov8n"
    assert not got.switching


def test_during_a_switch_the_previous_model_answers_until_the_new_one_is_ready() -> None:
    # generation 2 selects groundingdino; the status still tells of yolov8n (generation 1).
    status = _ready("yolov8n", "yolov8n", "old", generation=1)
    sel = selection("object_detection", "groundingdino", generation=2, status=status)
    models = {"old": "yolov8n", "new": "groundingdino"}
    got = _decide(_world(sel, [_ep("old"), _ep("new", ready=False)], models))
    assert isinstance(got, Serve) and got.switching
    assert got.model == "yolov8n" and [b.pod for b in got.backends] == ["old"]


def test_once_the_status_says_the_new_model_is_ready_the_old_one_never_answers() -> None:
    status = _ready("groundingdino", "IDEA-Research/grounding-dino-base", "new", generation=2)
    sel = selection("object_detection", "groundingdino", generation=2, status=status)
    models = {"old": "yolov8n", "new": "groundingdino"}
    got = _decide(_world(sel, [_ep("old")], models))  # the new endpoint is not published yet
    assert isinstance(got, Hold) and got.model == "groundingdino"
    served = _decide(_world(sel, [_ep("old"), _ep("new")], models))
    assert isinstance(served, Serve) and [b.pod for b in served.backends] == ["new"]


def test_a_terminating_endpoint_takes_no_new_request() -> None:
    sel = selection("object_detection", "yolov8n", status={"phase": "Loading"})
    got = _decide(_world(sel, [_ep("p1", ready=False, terminating=True)], {"p1": "yolov8n"}))
    assert isinstance(got, Hold) and got.phase == "Loading" and not got.wake


def test_a_failed_load_refuses_at_once_with_its_reason() -> None:
    status = {
        "phase": "Failed",
        "message": "Failed to load model: weights are not on disk",
        "observedGeneration": 1,
    }
    sel = selection("object_detection", "yolov8n", status=status)
    got = _decide(_world(sel, [], {}))
    assert isinstance(got, Refuse) and got.status == 503
    assert got.message == "Failed to load model: weights are not on disk"  # said once
    assert got.phase == "Failed"


def test_a_failed_switch_leaves_the_previous_model_answering() -> None:
    status = {"phase": "Failed", "message": "boom", "observedGeneration": 2}
    sel = selection("object_detection", "groundingdino", generation=2, status=status)
    got = _decide(_world(sel, [_ep("old")], {"old": "yolov8n"}))
    assert isinstance(got, Serve) and got.switching and got.model == "yolov8n"


def test_an_idle_unloaded_model_is_woken_by_its_request() -> None:
    status = {
        "phase": "Pending",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "IdleUnloaded", "message": "idle"}
        ],
    }
    sel = selection("object_detection", "yolov8n", status=status, loadPolicy="onDemand")
    got = _decide(_world(sel, [], {}))
    assert isinstance(got, Hold) and got.wake


def test_a_pod_that_refused_the_connection_is_skipped() -> None:
    sel = selection("object_detection", "yolov8n", status=_ready("yolov8n", "yolov8n", "p1", 1))
    world = _world(sel, [_ep("p1"), _ep("p22")], {"p1": "yolov8n", "p22": "yolov8n"})
    got = _decide(world, excluded=frozenset({"p1"}))
    assert isinstance(got, Serve) and [b.pod for b in got.backends] == ["p22"]


def test_the_route_closes_idle_pod_connections_before_the_pods_do() -> None:
    # Else a request can go out on a connection the pod is closing: a 502 for nothing.
    from fovea.api.gateway import POOL_KEEPALIVE_S
    from fovea.model_pod.main import KEEP_ALIVE_SECONDS

    assert POOL_KEEPALIVE_S < KEEP_ALIVE_SECONDS


def _pod(name: str, model: str, warm: bool) -> dict[str, Any]:
    annotations = {"fovea.dev/warm-options": "ten,five"} if warm else {}
    container = {"name": "model", "env": [{"name": "FOVEA_MODEL", "value": model}]}
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [container]},
    }


def test_a_warm_pod_is_routed_to_only_for_the_model_its_report_says_it_serves() -> None:
    """A warm pod's FOVEA_MODEL names its first model only: it switches in place since. The
    one whose report the selection's status holds serves what the report says; another warm
    pod (the selection's earlier one) is not routed to at all, whatever its FOVEA_MODEL."""
    runtime = {**runtime_ready("warm-b", "mlp-10", 0.1), "model": "ten", "servingModel": "ten"}
    sel = selection(
        "object_detection", "ten", 2, {**_ready("ten", "mlp-10", "warm-b"), "runtime": runtime}
    )
    pods = {
        "warm-a": _pod("warm-a", "ten", warm=True),  # started with ten, serves who knows now
        "warm-b": _pod("warm-b", "five", warm=True),  # started with five, reports ten
        "plain": _pod("plain", "five", warm=False),
    }
    assert pod_models(pods, [sel]) == {"warm-b": "ten", "plain": "five"}
