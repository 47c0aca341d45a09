"""OpenAI requests through the model pod to its engine (model_pod/passthrough.py), streamed."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from fovea.model_pod.adapters.adapter_engine import EngineAdapter
from fovea.model_pod.adapters.adapter_torch import TorchAdapter
from fovea.model_pod.adapters.engine_commands import Engine, EngineLaunch
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import READY, ModelService
from fovea.model_pod.server import HEADER_MODEL, HEADER_POD, create_app
from waiting import eventually

STAND_IN = Path(__file__).with_name("stand_in_engine.py")
TOKEN_DELAY_S = 0.25
WORDS = "one two three four five"  # the stand-in answers "echo: one two three four five"
TOKENS = len(f"echo: {WORDS}".split(" "))


def stand_in(*extra: str) -> Engine:
    def command(launch: EngineLaunch) -> list[str]:
        return [sys.executable, str(STAND_IN), "--port", str(launch.port), *extra]

    return Engine("stand-in", command, requires_gpu=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def engine_pod(make_identity: Callable[..., Identity]) -> Iterator[str]:
    """A model pod app for an engine stand-in that streams, served by uvicorn on loopback."""
    identity = make_identity("vllm", "org/chat-model")
    adapter = EngineAdapter(identity.spec, stand_in("--token-delay", str(TOKEN_DELAY_S)))
    service = ModelService(identity, adapter, reporter=None)
    service.load()
    assert service.state == READY, service.reason
    port = free_port()
    config = uvicorn.Config(
        create_app(service, on_shutdown=service.close), host="127.0.0.1", port=port
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, what="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
    service.close()


def test_a_streamed_answer_arrives_token_by_token(engine_pod: str) -> None:
    body = {
        "model": "test-option",  # the catalog's option: the engine gets its own name
        "messages": [{"role": "user", "content": WORDS}],
        "stream": True,
    }
    arrivals: list[tuple[float, bytes]] = []  # when each piece of the body came
    with httpx.stream("POST", f"{engine_pod}/v1/chat/completions", json=body, timeout=60) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers[HEADER_MODEL] == "test-option"
        assert answer.headers[HEADER_POD] == "test-pod"
        for piece in answer.iter_raw():
            arrivals.append((time.monotonic(), piece))
    events = [
        line.removeprefix("data: ")
        for line in b"".join(piece for _, piece in arrivals).decode().split("\n\n")
        if line
    ]
    assert len(events) == TOKENS + 1 and events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == f"echo: {WORDS}"
    assert {c["model"] for c in chunks} == {"org/chat-model"}
    # Passed on as the engine sent them, not gathered: the tokens came apart, over
    # the engine's delays (buffering would deliver them all at once, at the end).
    with_tokens = [moment for moment, piece in arrivals if b"data: " in piece]
    assert len(with_tokens) >= TOKENS
    spread = with_tokens[-1] - with_tokens[0]
    assert spread >= (TOKENS - 1) * TOKEN_DELAY_S * 0.5, spread


def test_answers_and_errors_pass_through_as_the_engine_gives_them(engine_pod: str) -> None:
    http = httpx.Client(base_url=engine_pod, timeout=60)
    done = http.post("/v1/completions", json={"model": "test-option", "prompt": "hi"})
    assert done.status_code == 200 and done.headers["content-type"] == "application/json"
    assert done.json() == {"model": "org/chat-model", "choices": [{"text": "echo: hi"}]}
    refused = http.post("/v1/chat/completions", json={"model": "test-option"})
    assert refused.status_code == 400  # the engine's own answer, as it gave it
    assert refused.json() == {"error": {"message": "messages is required"}}
    assert refused.headers[HEADER_MODEL] == "test-option"
    not_json = http.post("/v1/completions", content=b"{", headers={"content-type": "x"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]


def test_other_models_have_no_openai_routes(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("pytorch", "mlp-tiny")
    service = ModelService(identity, TorchAdapter(identity.spec), reporter=None)
    http = TestClient(create_app(service))
    for path in ("/v1/chat/completions", "/v1/completions"):
        answer = http.post(path, json={"prompt": "x"})
        assert answer.status_code == 404
        assert "engine-backed models only" in answer.json()["error"]


def test_an_engine_not_loaded_yet_answers_503(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("sglang", "org/chat-model")
    service = ModelService(identity, EngineAdapter(identity.spec, stand_in()), reporter=None)
    http = TestClient(create_app(service))
    answer = http.post("/v1/completions", json={"prompt": "x"})
    assert answer.status_code == 503 and "not ready" in answer.json()["error"]
