"""The OpenAI routes stream an engine's answer through, token by token, on the local cluster.

The engine is the stand-in vLLM/SGLang server (tests/model_pod/stand_in_engine.py)
run as a real pod of the selection, behind the selection's real Service (the
operator's own `build_service`) and the EndpointSlice the controller-manager
publishes for it; no operator runs, so nothing replaces that pod. The model
pod's own pass-through to an engine is tested in tests/model_pod.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from api_server import ApiServer
from fovea.domain import constants as c
from fovea.domain.endpoints import build_service, serving_selector
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration

STAND_IN = Path(__file__).parents[1] / "model_pod" / "stand_in_engine.py"
TOKEN_DELAY_S = 0.3
PROMPT = "one two three four five"  # the stand-in answers "echo: one two ..." word by word
CATALOG = {
    "tasks": {
        "chat": {"options": {"stand-in": {"modelId": "stand-in", "framework": "vllm", "vramGb": 1}}}
    }
}


def _engine_pod(selection: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "stand-in-engine",
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY, **serving_selector(selection, "stand-in")},
        },
        "spec": {
            "nodeName": "fovea-cpu-0",
            "containers": [
                {
                    "name": "engine",
                    "image": "fovea-models/model-server:test",
                    "command": [sys.executable, str(STAND_IN)],
                    "args": [
                        "--host=$(HOST)",
                        "--port=$(PORT)",
                        "--startup-seconds=0",
                        f"--token-delay={TOKEN_DELAY_S}",
                    ],
                    "env": [{"name": c.ENV_MODEL, "value": "stand-in"}],
                    "ports": [{"name": "http", "containerPort": c.MODEL_POD_PORT}],
                    "readinessProbe": {
                        "httpGet": {"path": "/health", "port": "http"},
                        "periodSeconds": 1,
                    },
                }
            ],
        },
    }


def test_a_streamed_chat_completion_arrives_token_by_token(kube: Kube, api: ApiServer) -> None:
    kube.apply_catalog(CATALOG)
    kube.select("chat", "stand-in")
    sel = kube.selection("chat")
    core = client.CoreV1Api(kube.api)
    name, uid = sel["metadata"]["name"], sel["metadata"]["uid"]
    core.create_namespaced_service(
        kube.namespace, build_service(name, kube.namespace, uid, "chat", "stand-in")
    )
    core.create_namespaced_pod(kube.namespace, _engine_pod(name))

    def listed() -> list[dict[str, Any]] | None:
        models: list[dict[str, Any]] = api.http.get("/v1/models").json()["data"]
        return models or None

    models = eventually(listed, 30, what="GET /v1/models to list the selected option")
    assert [(m["id"], m["task"]) for m in models] == [("stand-in", "chat")]

    body = {"model": "stand-in", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    # Held until the engine's pod is Ready and published, then streamed.
    arrivals: list[tuple[float, str]] = []
    with api.http.stream("POST", "/v1/chat/completions", json=body, timeout=120) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-fovea-model"] == "stand-in"
        assert resp.headers["x-fovea-pod"] == "stand-in-engine"
        for line in resp.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), line.removeprefix("data: ")))
    assert arrivals[-1][1] == "[DONE]"
    tokens = [json.loads(data)["choices"][0]["delta"]["content"] for _, data in arrivals[:-1]]
    assert "".join(tokens) == f"echo: {PROMPT}"
    # Passed through as the engine wrote them: the first and the last token are as far apart
    # as the engine's delays between them (a buffered answer would arrive all at once).
    spread = arrivals[-2][0] - arrivals[0][0]
    assert spread >= 0.5 * TOKEN_DELAY_S * (len(tokens) - 1), (spread, len(tokens))
    distinct = {round(t, 2) for t, _ in arrivals[:-1]}
    assert len(distinct) == len(tokens), arrivals


def test_openai_errors_take_openais_shape(kube: Kube, api: ApiServer) -> None:
    kube.apply_catalog(CATALOG)
    eventually(lambda: api.http.get("/api/models/config").status_code == 200 or None, 30)
    unknown = api.http.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert error["code"] == "model_not_found" and "nope" in error["message"]
    missing = api.http.post("/v1/completions", json={"prompt": "x"})
    assert missing.status_code == 400 and "model" in missing.json()["error"]["message"]
