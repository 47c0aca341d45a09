"""`?wait=`: the real operator and model pods load (or fail to load) what the API selected."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from api_server import ApiServer
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration

TASK = "object_detection"


def tiny(model_id: str, **extra: Any) -> dict[str, Any]:
    """A model the model pod can really build and load on a CPU in a second."""
    return {
        "modelId": model_id,
        "framework": "pytorch",
        "vramGb": 1.0,
        "architecture": "mlp-tiny",
        "allowRandomWeights": True,
        "description": "tiny MLP with random weights",
        **extra,
    }


@pytest.fixture
def catalog(kube: Kube) -> None:
    kube.apply_catalog(
        {
            "tasks": {
                TASK: {
                    "options": {
                        "tiny-a": tiny("fovea/tiny-a"),
                        "tiny-b": tiny("fovea/tiny-b"),
                        "broken": {"modelId": "fovea/no-such-model", "vramGb": 1.0},
                    }
                }
            },
            "inference": {"offloadThreshold": 0.8, "warmupOnStartup": True},
        }
    )


def select(api: ApiServer, model: str, wait: float) -> Any:
    return api.http.post(
        f"/api/models/select?task_type={TASK}&model_name={model}&wait={wait}", timeout=wait + 30
    )


def test_wait_returns_once_the_new_model_is_loaded_then_switches(
    kube: Kube, catalog: None, operator: None, api: ApiServer
) -> None:
    first = select(api, "tiny-a", 180)
    assert first.status_code == 200, first.text
    assert first.json()["model_id"] == "fovea/tiny-a"
    loaded = api.http.get("/api/models/status").json()["loaded_models"]
    model = loaded[TASK]
    assert model["model_id"] == "fovea/tiny-a"
    assert model["memory_usage_gb"] > 0
    assert model["simulated_gpu"] is True  # the local cluster's GPU: it ran on the CPU
    assert model["random_weights"] is True
    assert model["pod"] and model["node"]

    second = select(api, "tiny-b", 180)
    assert second.status_code == 200, second.text
    status = api.http.get("/api/models/status").json()
    assert status["loaded_models"][TASK]["model_id"] == "fovea/tiny-b"

    again = time.monotonic()
    assert select(api, "tiny-b", 30).status_code == 200  # already loaded: no wait
    assert time.monotonic() - again < 5


def test_wait_reports_a_model_that_fails_to_load(
    kube: Kube, catalog: None, operator: None, api: ApiServer
) -> None:
    response = select(api, "broken", 180)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error.startswith("Failed to load model: ")
    assert len(error) > len("Failed to load model: ")
    # Said once: the pod reports the reason, the operator and the API prefix it once.
    assert error.count("Failed to load model") == 1, error
    # The status says what /select?wait= answered (once the operator has seen the report).
    assert eventually(lambda: kube.status(TASK).get("message") == error or None, 60), error
    assert kube.status(TASK)["runtime"]["failure"] == "LoadError"


def test_wait_relays_out_of_memory_in_the_documented_words(
    kube: Kube, catalog: None, api: ApiServer
) -> None:
    # No operator here: this test writes what the operator and the pod would
    # after an OOM, as soon as the API's patch has landed.
    def play_operator() -> None:
        def patched() -> dict[str, Any] | None:
            obj = kube.selection(TASK) if kube.selections() else None
            return obj if obj and obj["spec"].get("model") == "tiny-a" else None

        obj = eventually(patched, 20)
        assert obj is not None
        kube.patch_status(
            TASK,
            {
                "phase": "Failed",
                "observedGeneration": obj["metadata"]["generation"],
                "message": "Failed to load model: Out of memory",
                "pod": "det-pod",
                "runtime": {"state": "Failed", "pod": "det-pod", "reason": "Out of memory"},
            },
        )

    operator = threading.Thread(target=play_operator)
    operator.start()
    response = select(api, "tiny-a", 30)
    operator.join()
    assert response.status_code == 500
    assert response.json() == {"error": "Failed to load model: Out of memory"}


def test_wait_times_out_with_the_documented_503(kube: Kube, catalog: None, api: ApiServer) -> None:
    started = time.monotonic()
    response = select(api, "tiny-a", 1.5)  # no operator: nothing will load it
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json() == {"error": "Model service timeout during model loading"}
    assert 1.4 <= elapsed < 6
    # The selection itself was made.
    assert kube.selection(TASK)["spec"]["model"] == "tiny-a"


def test_unload_frees_the_memory_and_load_brings_it_back(
    kube: Kube, catalog: None, operator: None, api: ApiServer
) -> None:
    assert select(api, "tiny-a", 180).status_code == 200
    assert api.http.post(f"/api/models/unload/{TASK}").status_code == 200
    gone = eventually(lambda: api.http.get("/api/models/status").json()["loaded_models"] == {}, 60)
    assert gone
    assert kube.model_pods() == [] or eventually(lambda: kube.model_pods() == [], 60)
    loaded = api.http.post(f"/api/models/load/{TASK}?wait=180", timeout=210)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["message"] == "Model loaded"
    assert api.http.get("/api/models/status").json()["loaded_models"][TASK]["model_id"] == (
        "fovea/tiny-a"
    )
