"""The model pod's HTTP surface, in-process and as the real command."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient
from PIL import Image

from fovea.domain import constants as c
from fovea.model_pod.adapters.adapter_torch import TorchAdapter
from fovea.model_pod.adapters.adapter_ultralytics import UltralyticsAdapter
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import ModelService
from fovea.model_pod.server import create_app


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


# The subcommand exactly as `fovea-models model-pod` runs it (configure, then run),
# without importing every other subcommand the CLI registers.
MODEL_POD = [
    sys.executable,
    "-c",
    "import argparse, sys\n"
    "from fovea.model_pod import main\n"
    "parser = argparse.ArgumentParser()\n"
    "main.configure(parser)\n"
    "sys.exit(main.run(parser.parse_args(sys.argv[1:])))",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_command_serves_on_port_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {
        **os.environ,
        c.ENV_TASK: "embedding",
        c.ENV_MODEL_ID: "org/bert-tiny",
        c.ENV_FRAMEWORK: "transformers",
        c.ENV_ARCHITECTURE: "bert-tiny",
        c.ENV_ALLOW_RANDOM_WEIGHTS: "1",
        c.ENV_PORT: str(port),
    }
    process = subprocess.Popen(
        [*MODEL_POD, "--no-report", "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, ready and ready.text
        answer = httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"texts": ["hello"]}, timeout=30
        )
        assert answer.status_code == 200
        assert len(answer.json()["embeddings"][0]) == 128
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then re-raises SIGTERM: the exit Kubernetes expects (143).
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert process.stdout is not None
        assert b"shutting down after" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_bad_environment_exits_2_with_the_reason() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOVEA_")}
    env[c.ENV_FRAMEWORK] = "pytorch"
    result = subprocess.run(
        [*MODEL_POD, "--no-report"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "FOVEA_TASK is not set" in result.stderr
