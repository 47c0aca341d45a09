"""Each selection's Service follows the model that can answer: make-before-break (pure)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from builders import NS, apply, catalog, catalog_spec, option, running, selection, world
from fovea.domain import constants as c
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Actions, World, reconcile

TASKS = {
    "det": {
        "small": option(modelId="yolov8n", framework="ultralytics", vramMb=512),
        "other": option(modelId="yolov8s", framework="ultralytics", vramMb=512),
    },
    "sum": {"claude": {"modelId": "claude", "framework": "external_api"}},
}


def _world(*sels: Any) -> World:
    return world(*sels, catalogs=[catalog(catalog_spec(TASKS))])


def _pass(w: World) -> tuple[Actions, World]:
    actions = reconcile(w, PodSettings()).actions()
    return actions, apply(w, actions)


def _ready_everything(w: World) -> World:
    return replace(w, pods=[running(p) for p in w.pods])


def _selector_model(w: World) -> str:
    (svc,) = w.services
    return str(svc["spec"]["selector"][c.LABEL_MODEL])


def test_a_selection_gets_one_owned_service_and_a_steady_pass_writes_none() -> None:
    actions, w = _pass(_world(selection("det", "small")))
    (svc,) = actions.services
    assert svc["metadata"]["name"] == "det"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-det"
    assert _selector_model(w) == "small"
    again, _ = _pass(_ready_everything(w))
    assert again.services == []


def test_the_status_names_the_endpoint() -> None:
    actions, _ = _pass(_world(selection("det", "small")))
    endpoint = actions.status[(NS, "det")]["endpoint"]
    assert endpoint == {
        "service": "det",
        "url": "http://det.ns.svc:8080",
        "route": "/api/models/predict/det",
        "servingModel": "small",
    }


def test_an_external_api_has_no_service() -> None:
    actions, _ = _pass(_world(selection("sum", "claude")))
    assert actions.services == []
    assert "endpoint" not in actions.status[(NS, "sum")]


def test_a_switch_moves_the_selector_only_once_the_new_pod_is_ready() -> None:
    _, w = _pass(_world(selection("det", "small")))
    w = _ready_everything(w)
    _, w = _pass(w)
    switched = replace(
        w.selections[0], spec=w.selections[0].spec.model_copy(update={"model": "other"})
    )
    actions, w = _pass(replace(w, selections=[switched]))
    assert actions.services == []  # the new pod exists but is not Ready: small still serves
    assert _selector_model(w) == "small"
    new_pods = [p for p in w.pods if p["metadata"]["labels"][c.LABEL_MODEL] == "other"]
    assert new_pods, "the new model's pod is created while the old one serves"
    w = _ready_everything(w)
    actions, w = _pass(w)
    (moved,) = actions.services
    assert moved["spec"]["selector"][c.LABEL_MODEL] == "other"


def test_a_switch_back_to_a_model_whose_pod_still_drains_keeps_the_serving_one() -> None:
    """A switch back does not wait for the drain of the model's earlier pod: its new pod
    takes another name at once, the serving pod stays until it is Ready, and once the
    earlier pod is gone the new one is found again by what it is (no duplicate, no roll)."""
    _, w = _pass(_world(selection("det", "small")))
    _, w = _pass(_ready_everything(w))
    sel = w.selections[0]
    assert sel.spec is not None
    to_other = replace(sel, spec=sel.spec.model_copy(update={"model": "other"}))
    _, w = _pass(replace(w, selections=[to_other]))
    w = _ready_everything(w)
    actions = reconcile(w, PodSettings()).actions()
    [(_, old_name)] = actions.delete  # other is Ready: small's pod goes (it drains)
    draining = [
        {**p, "metadata": {**p["metadata"], "deletionTimestamp": "2026-11-26T12:00:00Z"}}
        if p["metadata"]["name"] == old_name
        else p
        for p in w.pods
    ]
    w = apply(replace(w, pods=draining), replace(actions, delete=[]))
    back = replace(w.selections[0], spec=to_other.spec.model_copy(update={"model": "small"}))
    actions, after = _pass(replace(w, selections=[back]))
    serving = [p["metadata"]["name"] for p in w.pods if p["metadata"]["name"] != old_name]
    [created] = actions.create  # at once, beside the draining one, under another name
    new_name = created["metadata"]["name"]
    assert new_name != old_name and new_name.startswith("det-small-")
    assert actions.delete == []  # the serving pod stays until its successor is Ready
    assert after.selections[0].status["phase"] != "Ready"
    assert after.selections[0].status["pod"] == new_name
    assert _selector_model(after) == "other" and serving

    # The draining pod is gone: the new one is the pod (no second pod, nothing deleted).
    gone = replace(after, pods=[p for p in after.pods if p["metadata"]["name"] != old_name])
    again = reconcile(gone, PodSettings()).actions()
    assert again.create == [] and again.delete == []
    # Once it is Ready, the pod that served meanwhile goes, and the new one stays.
    final = reconcile(_ready_everything(gone), PodSettings()).actions()
    assert final.create == [] and [name for _, name in final.delete] == serving
