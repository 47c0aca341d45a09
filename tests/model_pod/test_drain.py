"""Draining on SIGTERM (model_pod/drain.py), with a real uvicorn on loopback."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from fovea.domain import constants as c
from fovea.model_pod.drain import GRACE_MARGIN_SECONDS, drain_period
from fovea.model_pod.identity import IdentityError, identity_from_env
from fovea.model_pod.server import HEADER_MODEL, HEADER_POD
from waiting import eventually

SERVER = Path(__file__).with_name("drain_server.py")
DRAIN_S = 2.0
LINE_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """The server process and the lines it prints."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", str(port), "--drain-seconds", str(DRAIN_S)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip())

    def answering(self) -> bool:
        """Whether the server accepts connections yet."""
        try:
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def wait_for(self, text: str) -> None:
        """Return once the child has printed `text` (fail if it does not)."""
        while text not in self.seen:
            try:
                self.seen.append(self.lines.get(timeout=LINE_TIMEOUT_S))
            except queue.Empty:
                pytest.fail(f"the server never printed {text!r}; it printed {self.seen}")


@pytest.fixture
def child() -> Iterator[Child]:
    server = Child(free_port())
    server.wait_for("serving")
    eventually(server.answering, what="the server to accept connections")
    yield server
    if server.process.poll() is None:
        server.process.kill()
    server.process.wait(timeout=30)


def test_sigterm_drains_then_finishes_what_is_in_flight(child: Child) -> None:
    http = httpx.Client(base_url=child.url, timeout=60)
    assert http.get("/readyz").status_code == 200
    with ThreadPoolExecutor(max_workers=2) as pool:
        # In flight when SIGTERM arrives.
        before = pool.submit(http.get, "/slow", params={"seconds": 1.0, "name": "before"})
        child.wait_for("before started")
        child.process.send_signal(signal.SIGTERM)
        # Unready at once, so the endpoints drop the pod...
        readyz = http.get("/readyz")
        assert readyz.status_code == 503 and readyz.json()["reason"].startswith("draining")
        # ... while new requests are still answered during the drain period.
        answer = http.post("/predict", json={"inputs": [[0.0] * 64]})
        assert answer.status_code == 200 and answer.json()["shape"] == [1, 10]
        assert (answer.headers[HEADER_MODEL], answer.headers[HEADER_POD]) == (
            "test-option",
            "test-pod",
        )
        # Started in the drain period and still running when uvicorn shuts down.
        during = pool.submit(http.get, "/slow", params={"seconds": DRAIN_S + 1, "name": "during"})
        child.wait_for("during started")
        assert before.result().status_code == 200
        assert during.result().json() == {"done": "during"}
    child.wait_for("shut down")
    # uvicorn re-raises SIGTERM once shut down: the exit Kubernetes expects (143).
    assert child.process.wait(timeout=60) == -signal.SIGTERM
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{child.url}/healthz", timeout=5)


def test_errors_name_the_model_and_the_pod_too(child: Child) -> None:
    bad = httpx.post(f"{child.url}/predict", json={"inputs": [[0.0]]}, timeout=60)
    assert bad.status_code == 400 and "shape [64]" in bad.json()["error"]
    assert (bad.headers[HEADER_MODEL], bad.headers[HEADER_POD]) == ("test-option", "test-pod")


@pytest.mark.parametrize(
    ("wanted", "grace", "period"),
    [
        (3.0, 30.0, 3.0),
        (40.0, 30.0, 30.0 - GRACE_MARGIN_SECONDS),  # never into the grace period's end
        (3.0, 1.0, 0.0),  # no time to drain: shut down at once
        (0.0, 30.0, 0.0),
    ],
)
def test_the_drain_period_stays_within_the_grace_period(
    wanted: float, grace: float, period: float
) -> None:
    assert drain_period(wanted, grace) == period


def test_the_drain_settings_come_from_the_environment() -> None:
    base = {c.ENV_TASK: "t", c.ENV_MODEL_ID: "mlp-tiny", c.ENV_FRAMEWORK: "pytorch"}
    assert identity_from_env(base).drain_seconds == 3.0
    capped = {**base, c.ENV_DRAIN_SECONDS: "20", c.ENV_TERMINATION_GRACE_SECONDS: "10"}
    assert identity_from_env(capped).drain_seconds == 10.0 - GRACE_MARGIN_SECONDS
    with pytest.raises(IdentityError, match="FOVEA_DRAIN_SECONDS='soon' is not a number"):
        identity_from_env({**base, c.ENV_DRAIN_SECONDS: "soon"})
