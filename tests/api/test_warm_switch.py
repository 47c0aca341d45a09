"""Warm switches on the real local cluster (docs/architecture.md, "Warm switches").

The operator runs with FOVEA_OPERATOR_WARM_SWITCHES=true; the catalog's options
are tiny torch models of one framework, so one pod serves the task through
its switches: the new model loads into the running process, the one it left
stays parked, and the pod's own report (status.runtime) says where each model
came from (`loadSource`, `diskLoads`) and what it parks, measured.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api_server import ApiServer
from kube_testing import Kube, eventually, mlp_option

pytestmark = pytest.mark.integration

SAMPLE = {"inputs": [[0.5] * 64]}


def _option(outputs: int, memory_gb: float = 1.0, **extra: Any) -> dict[str, Any]:
    return mlp_option(outputs, 0.5, cpuMemoryGb=memory_gb, **extra)


@pytest.fixture
def warm_operator(
    operator_factory: Callable[[], subprocess.Popen[bytes]],
    kube: Kube,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOVEA_OPERATOR_WARM_SWITCHES", "true")
    proc = operator_factory()
    assert proc.poll() is None


def _select(api: ApiServer, model: str) -> tuple[int, str, float]:
    sent = time.monotonic()
    resp = api.http.post(
        f"/api/models/select?task_type=det&model_name={model}&wait=120", timeout=150
    )
    return resp.status_code, resp.text, time.monotonic() - sent


def _runtime(kube: Kube) -> dict[str, Any]:
    return dict(kube.status("det").get("runtime") or {})


def _answer(api: ApiServer) -> tuple[int, str, int | None]:
    resp = api.http.post("/api/models/predict/det", json=SAMPLE)
    width = resp.json()["shape"][-1] if resp.status_code == 200 else None
    return resp.status_code, resp.headers.get("x-fovea-model", ""), width


def _switch_record(kube: Kube, model: str) -> dict[str, Any] | None:
    record = dict(kube.status("det").get("lastSwitch") or {})
    if record.get("model") == model and record.get("totalSeconds") is not None:
        return record
    return None


def _reported(kube: Kube, model: str, source: str) -> dict[str, Any] | None:
    runtime = _runtime(kube)
    if runtime.get("model") == model and runtime.get("loadSource") == source:
        return runtime
    return None


def test_a_switch_back_within_the_keep_warm_time_loads_nothing_from_disk(
    kube: Kube, warm_operator: None, api: ApiServer
) -> None:
    kube.apply_catalog({"tasks": {"det": {"options": {"ten": _option(10), "five": _option(5)}}}})
    code, text, _ = _select(api, "ten")
    assert code == 200, text
    first = _runtime(kube)
    assert (first["model"], first["loadSource"], first["diskLoads"]) == ("ten", "disk", 1)
    pod = first["pod"]
    assert [p["metadata"]["name"] for p in kube.model_pods()] == [pod]

    code, text, _ = _select(api, "five")
    assert code == 200, text
    switched = eventually(lambda: _reported(kube, "five", "disk"), 30)
    assert switched["pod"] == pod  # the same process: no pod start, no imports
    assert switched["diskLoads"] == 2 and switched["servingModel"] == "five"
    assert [p["model"] for p in switched["parked"]] == ["ten"]
    assert switched["parked"][0]["measuredMemoryGb"] > 0
    assert _answer(api) == (200, "five", 5)

    started = time.monotonic()
    code, text, _ = _select(api, "ten")
    assert code == 200, text
    back = eventually(lambda: _reported(kube, "ten", "parked"), 30)
    window = time.monotonic() - started
    assert back["pod"] == pod and back["diskLoads"] == 2  # nothing read from disk
    # The switch's record holds the pod's own steps (no process start: the runtime ran)
    # and its total is inside the test's own select->reported window (it read 0 when the
    # operator's pass, seeing the warm pod done already, dated the start from itself).
    record = eventually(lambda: _switch_record(kube, "ten"), 30)
    steps = [p["name"] for p in record["phases"]]
    assert "RuntimeReady" in steps and "Loaded" in steps and "ProcessStarted" not in steps
    assert 0 < record["totalSeconds"] <= window + 1.0, (record, window)
    assert [p["model"] for p in back["parked"]] == ["five"]
    assert _answer(api) == (200, "ten", 10)
    status = kube.status("det")
    assert status["phase"] == "Ready" and status["pod"] == pod
    assert status["endpoint"]["servingModel"] == "ten"
    assert [p["metadata"]["name"] for p in kube.model_pods()] == [pod]


def test_a_failed_switch_leaves_the_old_model_ready_and_serving(
    kube: Kube, warm_operator: None, api: ApiServer
) -> None:
    broken = {
        "modelId": "/models/missing.pt",
        "framework": "pytorch",
        "vramGb": 0.5,
        "cpuMemoryGb": 1.0,
    }
    kube.apply_catalog({"tasks": {"det": {"options": {"ten": _option(10), "broken": broken}}}})
    code, text, _ = _select(api, "ten")
    assert code == 200, text
    pod = _runtime(kube)["pod"]

    code, text, _ = _select(api, "broken")
    assert code != 200 and "Failed to load model" in text, (code, text)
    runtime = _runtime(kube)
    assert (runtime["model"], runtime["state"], runtime["servingModel"]) == (
        "broken",
        "Failed",
        "ten",
    )
    assert runtime["diskLoads"] == 2  # one try: its own reports do not start it again
    status = eventually(
        lambda: kube.status("det") if kube.phases()["det"] == "Failed" else None, 30
    )
    assert "not on disk" in status["message"]
    assert _answer(api) == (200, "ten", 10)  # the old model answers the task meanwhile
    served = kube.pod(pod)
    assert served is not None and not served["metadata"].get("deletionTimestamp")
    ready = [c for c in served["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"

    code, text, _ = _select(api, "ten")  # back to the serving model: nothing to load
    assert code == 200, text
    again = _runtime(kube)
    assert (again["model"], again["state"], again["diskLoads"]) == ("ten", "Ready", 2)


def test_parked_models_go_first_when_the_serving_model_needs_the_memory(
    kube: Kube, warm_operator: None, api: ApiServer
) -> None:
    # "huge" holds 1.0 GiB of weights (64x16384 + 16384x16384 floats) but declares 1 GiB
    # like "ten": the pod requests the group's largest, 1.25 GiB ("five"), and with huge
    # served, the runtime and huge leave no room for anything parked.
    huge = _option(3) | {"modelId": "mlp-huge", "architecture": "mlp:64,16384,16384,3"}
    options = {"ten": _option(10), "five": _option(5, memory_gb=1.25), "huge": huge}
    kube.apply_catalog({"tasks": {"det": {"options": options}}})
    code, text, _ = _select(api, "ten")
    assert code == 200, text
    pod = kube.pod(_runtime(kube)["pod"])
    assert pod is not None
    requests = pod["spec"]["containers"][0]["resources"]["requests"]
    assert requests["memory"] == "1280Mi"  # what the plan counts for the pod, parked models in

    code, text, _ = _select(api, "five")
    assert code == 200, text
    parked = eventually(lambda: _reported(kube, "five", "disk"), 30)
    assert [p["model"] for p in parked["parked"]] == ["ten"]

    code, text, _ = _select(api, "huge")
    assert code == 200, text
    full = eventually(lambda: _reported(kube, "huge", "disk"), 60)
    assert full["parked"] == [] and full["diskLoads"] == 3  # both parked models dropped
    assert full["state"] == "Ready" and full["servingModel"] == "huge"
    code, text, _ = _select(api, "ten")
    assert code == 200, text
    assert eventually(lambda: _reported(kube, "ten", "disk"), 30)["diskLoads"] == 4


def test_requests_through_warm_switches_all_answered_by_the_model_they_name(
    kube: Kube, warm_operator: None, api: ApiServer
) -> None:
    kube.apply_catalog({"tasks": {"det": {"options": {"ten": _option(10), "five": _option(5)}}}})
    code, text, _ = _select(api, "ten")
    assert code == 200, text
    stop = threading.Event()
    answers: list[tuple[float, int, str, int | None]] = []

    def stream() -> None:
        with httpx.Client(base_url=api.url, timeout=120) as http:
            while not stop.is_set():
                sent = time.monotonic()
                resp = http.post("/api/models/predict/det", json=SAMPLE)
                width = resp.json()["shape"][-1] if resp.status_code == 200 else None
                answers.append(
                    (sent, resp.status_code, resp.headers.get("x-fovea-model", ""), width)
                )

    threads = [threading.Thread(target=stream, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    windows = []
    try:
        for n in range(8):
            model = "five" if n % 2 == 0 else "ten"
            code, text, _ = _select(api, model)
            assert code == 200, text
            ready = time.monotonic()
            enough = eventually(lambda: sum(a[0] >= ready for a in answers) >= 6 or None, 60)  # noqa: B023
            assert enough, "no traffic after the switch"
            windows.append((ready, time.monotonic(), model))
    finally:
        stop.set()
        for t in threads:
            t.join(150)
    assert answers and all(a[1] == 200 for a in answers), [a for a in answers if a[1] != 200][:5]
    widths = {"ten": 10, "five": 5}
    assert all(widths[a[2]] == a[3] for a in answers)  # the header names who computed it
    for ready, until, model in windows:  # after Ready, only the new model answers
        stale = [a for a in answers if ready <= a[0] < until and a[2] != model]
        assert not stale, (model, stale[:3])
    assert _runtime(kube)["diskLoads"] == 2  # ten, then five once: every other switch parked


def test_without_the_setting_each_model_has_its_own_pod(
    kube: Kube, operator: None, api: ApiServer
) -> None:
    assert os.environ.get("FOVEA_OPERATOR_WARM_SWITCHES") is None
    kube.apply_catalog({"tasks": {"det": {"options": {"ten": _option(10), "five": _option(5)}}}})
    code, text, _ = _select(api, "ten")
    assert code == 200, text
    first = _runtime(kube)["pod"]
    code, text, _ = _select(api, "five")
    assert code == 200, text
    runtime = _runtime(kube)
    assert runtime["pod"] != first and not runtime.get("parked")
    assert len(kube.model_pods()) == 1
