"""The model pod's HTTP surface, in-process and as the real command."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from fastapi.testclient import TestClient
from PIL import Image

from fovea.domain import constants as c
from fovea.model_pod.adapters.adapter_torch import TorchAdapter
from fovea.model_pod.adapters.adapter_ultralytics import UltralyticsAdapter
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import ModelService
from fovea.model_pod.server import MAX_BODY_BYTES, create_app, declared_too_large
from kube_testing import eventually


def test_probes_follow_the_model_state(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("pytorch", "mlp-tiny")
    service = ModelService(identity, TorchAdapter(identity.spec), reporter=None)
    http = TestClient(create_app(service))
    assert http.get("/healthz").status_code == 200
    not_yet = http.get("/readyz")
    assert not_yet.status_code == 503 and not_yet.json()["state"] == "Loading"
    assert http.post("/predict", json={"inputs": [[0.0] * 64]}).status_code == 503

    service.load()
    assert http.get("/readyz").status_code == 200
    answer = http.post("/predict", json={"inputs": [[0.0] * 64, [1.0] * 64]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["shape"] == [2, 10] and body["randomWeights"] is True
    assert body["modelId"] == "mlp-tiny" and body["device"] == "cpu"

    bad = http.post("/predict", json={"inputs": [[0.0]]})
    assert bad.status_code == 400 and "shape [64]" in bad.json()["error"]
    not_json = http.post("/predict", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    info = http.get("/info").json()
    assert info["runtime"]["state"] == "Ready" and info["framework"] == "pytorch"


def test_failed_model_stays_alive_but_not_ready(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("pytorch", "/models/missing.pt", allow_random_weights=False)
    service = ModelService(identity, TorchAdapter(identity.spec), reporter=None)
    service.load()
    http = TestClient(create_app(service))
    assert http.get("/healthz").status_code == 200
    ready = http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["state"] == "Failed"
    assert "not on disk" in ready.json()["reason"]
    refused = http.post("/predict", json={"inputs": [[0.0]]})
    assert refused.status_code == 503 and "not on disk" in refused.json()["error"]


def test_detector_takes_raw_image_bytes(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("ultralytics", "yolov8n.yaml", batch_size=1)
    service = ModelService(identity, UltralyticsAdapter(identity.spec), reporter=None)
    service.load()
    http = TestClient(create_app(service))
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="JPEG")
    raw = http.post("/predict", content=buffer.getvalue(), headers={"content-type": "image/jpeg"})
    assert raw.status_code == 200 and isinstance(raw.json()["detections"], list)
    encoded = http.post("/predict", json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert encoded.status_code == 200


def announced_too_large(url: str) -> bytes:
    """The status line a server answers to headers announcing a body over the limit."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: pod\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        return conn.recv(4096).split(b"\r\n", 1)[0] + b" "


def test_a_body_over_the_limit_is_refused_413(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("pytorch", "mlp-tiny")
    service = ModelService(identity, TorchAdapter(identity.spec), reporter=None)
    service.load()
    http = TestClient(create_app(service))

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        for _ in range(MAX_BODY_BYTES // (1 << 20) + 4):
            yield b" " * (1 << 20)

    refused = http.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert refused.status_code == 413 and "over" in refused.json()["error"]
    assert declared_too_large(str(MAX_BODY_BYTES + 1)) and declared_too_large("-1")
    assert declared_too_large("nope") and not declared_too_large(str(MAX_BODY_BYTES))
    assert not declared_too_large(None)


def test_the_command_serves_on_port_and_stops_on_sigterm(
    start_model_pod: Callable[..., Any],
) -> None:
    env = {
        **os.environ,
        c.ENV_TASK: "embedding",
        c.ENV_MODEL_ID: "org/bert-tiny",
        c.ENV_FRAMEWORK: "transformers",
        c.ENV_ARCHITECTURE: "bert-tiny",
        c.ENV_ALLOW_RANDOM_WEIGHTS: "1",
    }
    pod = start_model_pod(env, "--no-report")
    ready = eventually(lambda: httpx.get(f"{pod.url}/readyz", timeout=2).status_code == 200, 120)
    assert ready, pod.log.read_text()
    answer = httpx.post(f"{pod.url}/predict", json={"texts": ["hello"]}, timeout=30)
    assert answer.status_code == 200
    assert len(answer.json()["embeddings"][0]) == 128
    # A body announced over the limit is refused from its headers alone: none
    # of it is ever sent, so a server that waited for it would never answer.
    assert announced_too_large(pod.url).startswith(b"HTTP/1.1 413 ")
    pod.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down, then re-raises SIGTERM: the exit Kubernetes expects (143).
    assert pod.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "shutting down after" in pod.log.read_text()


def test_a_bad_environment_exits_2_with_the_reason(model_pod_command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOVEA_")}
    env[c.ENV_FRAMEWORK] = "pytorch"
    result = subprocess.run(
        [*model_pod_command, "--no-report"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "FOVEA_TASK is not set" in result.stderr
