"""The inference route's holds and refusals on the real local cluster.

Every request is answered by a Ready model, held while one loads, or refused
at once with the reason: each way is shown here against a real API server,
with real model pods where one answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import yaml
from kubernetes import client

import http_model
from api_server import ApiServer
from fovea.domain import constants as c
from fovea.domain.endpoints import build_service
from kube_testing import Kube, eventually
from tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

SAMPLE = {"inputs": [[0.5] * 64]}


def _tiny(**extra: Any) -> dict[str, Any]:
    return {
        "modelId": "mlp-tiny",
        "framework": "pytorch",
        "vramGb": 1.0,
        "architecture": "mlp:64,3",
        "allowRandomWeights": True,
        **extra,
    }


CATALOG = {
    "tasks": {
        "det": {"options": {"m": _tiny()}},
        "sum": {"options": {"claude": {"modelId": "claude-x", "framework": "external_api"}}},
        "broken": {
            "options": {
                # No weights on disk and random weights not allowed: the load fails.
                "nowhere": _tiny(modelId="org/not-here", allowRandomWeights=False)
            }
        },
    }
}


def test_bad_requests_are_refused_with_the_contracts_shape(kube: Kube, api: ApiServer) -> None:
    kube.apply_catalog(CATALOG)
    assert eventually(lambda: api.http.get("/api/models/config").status_code == 200 or None, 30)
    unknown = api.http.post("/api/models/predict/nope", json=SAMPLE)
    assert unknown.status_code == 404, unknown.text
    assert "nope" in unknown.json()["error"] and "det" in unknown.json()["error"]

    none = api.http.post("/api/models/predict/det", json=SAMPLE)  # nothing selected yet
    assert none.status_code == 409 and "select" in none.json()["error"], none.text

    kube.select("sum", "claude")
    assert eventually(lambda: _selected(api, "sum") or None, 30)
    external = api.http.post("/api/models/predict/sum", json=SAMPLE)
    assert external.status_code == 422 and "external API" in external.json()["error"]

    # Announced too large: answered before a byte of the body is read (or forwarded).
    big = _announce_body(api, "/api/models/predict/det", c.MAX_PREDICT_BODY_BYTES + 1)
    assert big.startswith(b"HTTP/1.1 413"), big[:200]
    assert b"limit" in big


def test_a_full_queue_answers_429_and_a_wait_that_runs_out_503_with_the_phase(
    kube: Kube, api_factory: Callable[..., ApiServer]
) -> None:
    # No operator runs here: the selection stays Pending, so every request must wait.
    api = api_factory(queue_length=1, hold_seconds=4)
    api.wait_ready()
    kube.apply_catalog(CATALOG)
    kube.select("det", "m")
    assert eventually(lambda: _selected(api, "det") or None, 30)
    held: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: held.append(api.http.post("/api/models/predict/det", json=SAMPLE))
    )
    first.start()
    queued = lambda: api.http.get("/api/models/inference").json()["tasks"].get("det", {})  # noqa: E731
    assert eventually(lambda: queued().get("queued") == 1 or None, 10), queued()
    full = api.http.post("/api/models/predict/det", json=SAMPLE)
    assert full.status_code == 429, full.text
    assert int(full.headers["retry-after"]) >= 1
    assert "Too many requests waiting" in full.json()["error"]
    first.join(30)
    (late,) = held
    assert late.status_code == 503, late.text
    assert "not Ready after" in late.json()["error"] and late.json()["phase"], late.json()
    assert late.headers.get("retry-after")


def test_a_failed_load_answers_its_waiting_requests_with_the_reason(
    kube: Kube, operator: None, api: ApiServer
) -> None:
    kube.apply_catalog(CATALOG)
    kube.select("broken", "nowhere")
    # The API routes from its own watch: the selection made on the API server reaches it a
    # moment later (under load, after the predict: it answered 409 "No model selected").
    assert eventually(lambda: _selected(api, "broken") or None, 30)
    answer = api.http.post("/api/models/predict/broken", json=SAMPLE)  # held, then refused
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["phase"] == "Failed" and "failed to load" in body["error"].lower(), body
    # The route answered from the pod's own report; the operator's status says the same.
    failed = lambda: kube.status("broken").get("phase") == "Failed" or None  # noqa: E731
    assert eventually(failed, 60), kube.status("broken")
    status = kube.status("broken")
    # The reason the client reads is the one the status gives.
    assert (status.get("runtime") or {}).get("reason", "") in body["error"] or status[
        "message"
    ].split(": ", 1)[-1] in body["error"], (status, body)


def test_a_model_unloaded_by_keep_alive_is_loaded_again_by_a_request(
    kube: Kube, operator: None, api: ApiServer
) -> None:
    kube.apply_catalog(CATALOG)
    kube.select("det", "m", load_policy="onDemand", wanted=True, keep_alive="3s")
    assert eventually(lambda: kube.status("det").get("phase") == "Ready" or None, 120)

    def unloaded() -> bool:
        return bool(kube.status("det").get("idleUnloadedAt")) and not kube.model_pods()

    assert eventually(lambda: unloaded() or None, 90), kube.status("det")
    started = time.monotonic()
    woken = api.http.post("/api/models/predict/det", json=SAMPLE, timeout=180)
    took = time.monotonic() - started
    assert woken.status_code == 200, woken.text
    assert woken.headers["x-fovea-model"] == "m" and woken.json()["shape"] == [1, 3]
    held_ms = int(woken.headers["x-fovea-held-ms"])
    assert 0 < held_ms <= took * 1000 + 1, (held_ms, took)
    assert kube.model_pods(), "the request brought the model's pod back"


def test_ready_models_keep_answering_while_the_api_server_is_unreachable(
    kube: Kube,
    operator: None,
    api_factory: Callable[..., ApiServer],
    kubeconfig: str,
    tmp_path: Path,
) -> None:
    kube.apply_catalog(CATALOG)
    kube.select("det", "m")
    assert eventually(lambda: kube.status("det").get("phase") == "Ready" or None, 120)
    # An API whose only way to the API server is a relay that the test cuts.
    config = yaml.safe_load(Path(kubeconfig).read_text())
    server = urlparse(config["clusters"][0]["cluster"]["server"])
    proxy = TcpProxy((server.hostname or "127.0.0.1", server.port or 443))
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    relayed = tmp_path / "relayed.kubeconfig"
    relayed.write_text(yaml.safe_dump(config))
    api = api_factory(kubeconfig=str(relayed))
    api.wait_ready()
    assert eventually(lambda: _predict_ok(api) or None, 60), "never answered through the route"
    proxy.cut()
    assert eventually(lambda: api.http.get("/readyz").status_code == 503 or None, 60)
    # Reads answer from the last synced view, saying how stale it is (FOVEA_API_STALE_READ_...).
    status = api.http.get("/api/models/status")
    assert status.status_code == 200 and "x-fovea-stale-seconds" in status.headers
    assert api.http.post("/api/models/select?task_type=det&model_name=m").status_code == 503
    answers = [api.http.post("/api/models/predict/det", json=SAMPLE) for _ in range(20)]
    assert [a.status_code for a in answers] == [200] * 20, answers[-1].text
    assert {a.headers["x-fovea-model"] for a in answers} == {"m"}


def _announce_body(api: ApiServer, path: str, length: int) -> bytes:
    """The raw answer to a POST that announces `length` bytes and sends none of them."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _selected(api: ApiServer, task: str) -> bool:
    resp = api.http.get("/api/models/config")
    return resp.status_code == 200 and bool(resp.json()["models"].get(task, {}).get("selected"))


def _predict_ok(api: ApiServer) -> bool:
    return api.http.post("/api/models/predict/det", json=SAMPLE).status_code == 200


def test_a_pod_that_dies_mid_request_answers_502_and_the_next_request_goes_to_a_ready_pod(
    kube: Kube, api: ApiServer
) -> None:
    # No operator: the selection's Service (the operator's own build_service) selects two
    # stand-in pods of its model, one of which dies on its first request.
    kube.apply_catalog(CATALOG)
    kube.select("det", "m")
    sel = kube.selection("det")
    core = client.CoreV1Api(kube.api)
    name, uid = sel["metadata"]["name"], sel["metadata"]["uid"]
    core.create_namespaced_service(
        kube.namespace, build_service(name, kube.namespace, uid, "det", "m")
    )
    core.create_namespaced_pod(
        kube.namespace, http_model.pod("m-dies", name, "m", mode="die", nodeName="fovea-cpu-0")
    )
    core.create_namespaced_pod(
        kube.namespace, http_model.pod("m-answers", name, "m", nodeName="fovea-cpu-0")
    )

    def seen_ready() -> int:  # as the route sees them
        tasks = api.http.get("/api/models/inference").json()["tasks"]
        return sum(1 for ep in tasks.get("det", {}).get("endpoints", []) if ep["ready"])

    assert eventually(lambda: seen_ready() == 2 or None, 60), api.http.get(
        "/api/models/inference"
    ).text
    answers = [api.http.post("/api/models/predict/det", json=SAMPLE) for _ in range(2)]
    broken = [a for a in answers if a.status_code != 200]
    assert [a.status_code for a in broken] == [502], [a.text for a in answers]
    assert "m-dies" in broken[0].json()["error"], broken[0].text
    after = [api.http.post("/api/models/predict/det", json=SAMPLE) for _ in range(5)]
    assert [a.status_code for a in after] == [200] * 5, [a.text for a in after]
    assert {a.headers["x-fovea-pod"] for a in after} == {"m-answers"}
    assert {a.json()["pod"] for a in after} == {"m-answers"}  # the pod's own word


def test_a_held_request_whose_client_left_frees_its_place_in_the_queue(
    kube: Kube, api_factory: Callable[..., ApiServer]
) -> None:
    api = api_factory(queue_length=1, hold_seconds=120)  # no operator: nothing gets Ready
    api.wait_ready()
    kube.apply_catalog(CATALOG)
    kube.select("det", "m")
    assert eventually(lambda: _selected(api, "det") or None, 30)
    with pytest.raises(httpx.ReadTimeout):
        api.http.post("/api/models/predict/det", json=SAMPLE, timeout=1.5)  # the client leaves
    queued = lambda: api.http.get("/api/models/inference").json()["tasks"]["det"]["queued"]  # noqa: E731
    assert eventually(lambda: queued() == 0 or None, 10), queued()
    metrics = api.http.get("/metrics").text
    assert 'fovea_inference_requests_total{code="499",model="m",task="det"} 1.0' in metrics
