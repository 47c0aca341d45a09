"""Keep-alive on the real local cluster: an idle on-demand model goes, and /load brings it back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api_server import ApiServer
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration

TINY = {
    "modelId": "mlp-tiny",
    "framework": "pytorch",
    "vramGb": 1.0,
    "architecture": "mlp-tiny",
    "allowRandomWeights": True,
}


def test_an_idle_model_is_unloaded_and_loads_again_on_load(
    kube: Kube, operator: None, api: ApiServer
) -> None:
    kube.apply_catalog({"tasks": {"det": {"options": {"m": TINY}}}})
    kube.select("det", "m", load_policy="onDemand", wanted=True, keep_alive="5s")
    # The real model pod loads the model and reports it.
    ready = eventually(lambda: kube.status("det").get("phase") == "Ready" or None, 120)
    assert ready, (kube.status("det"), kube.events("det"))

    def unloaded() -> dict[str, Any] | None:
        status = kube.status("det")
        idle = status.get("idleUnloadedAt") and not kube.model_pods()
        return status if idle else None

    status = eventually(unloaded, 60)
    assert status is not None, kube.status("det")
    assert status["phase"] == "Pending" and "keepAlive (5s)" in status["message"]
    assert kube.selection("det")["spec"]["model"] == "m"  # the selection stays
    reasons = lambda: {e["reason"] for e in kube.events("det")}  # noqa: E731
    assert eventually(lambda: "IdleUnloaded" in reasons() or None), reasons()

    resp = api.http.post("/api/models/load/det")
    assert resp.status_code == 200, resp.text
    # (The unloaded pod may take a while to terminate: the new one of the same name waits.)
    back = eventually(lambda: (kube.model_pods() and kube.status("det").get("pod")) or None, 180)
    assert back is not None, json.dumps([kube.selection("det")["spec"], kube.status("det")])
