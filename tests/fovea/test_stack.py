"""`fovea-models up` as a user runs it: choices survive restarts, crashed children come back.

One stack in its own state directory (its own cluster, beside the session's),
driven only from outside: the REST API, signals, and the Kubernetes API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from kubernetes import client

from api_server import free_port
from fovea.domain import constants as c
from fovea.kube import api_client
from fovea.stack import Child, restart_delay, split_defaults
from kube_testing import eventually

UP = [sys.executable, "-P", "-m", "fovea.cli", "up"]
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = (
    "check-available-models.mjs",
    "switch-model.mjs",
    "validate-before-selection.mjs",
    "monitor-memory.mjs",
)
GPUS = ["--gpus", "2x24GiB,1x80GiB"]
START_S = 240.0


class Stack:
    """A foreground `fovea-models up`, its log, and its API."""

    def __init__(self, state_dir: Path, log: Path) -> None:
        self.state_dir, self.log = state_dir, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*UP, "--state-dir", str(self.state_dir), *GPUS, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert eventually(self.answers, START_S), self.said()

    def answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.said()
        try:
            return httpx.get(f"{self.url}/api/models/config", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=90)

    def said(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def config(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/api/models/config", timeout=10).json()
        return body

    def child(self, role: str) -> psutil.Process | None:
        assert self.proc is not None
        for proc in psutil.Process(self.proc.pid).children():
            try:
                cmdline = proc.cmdline()
            except psutil.Error:
                continue
            if "fovea.cli" in cmdline and role in cmdline:
                return proc
        return None

    def kube(self) -> client.ApiClient:
        state = json.loads((self.state_dir / "state.json").read_text())
        return api_client(state["kubeconfig"])


def node_example(name: str, url: str) -> str:
    """Run one of examples/js with node against `url`; its stdout (it must exit 0)."""
    binary = shutil.which("node")
    assert binary, "node is not installed"
    done = subprocess.run(
        [binary, str(REPO / "examples" / "js" / name)],
        env={**os.environ, "FOVEA_API_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path / "cluster", tmp_path / "up.log")
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.proc.send_signal(signal.SIGINT)
        try:
            running.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            running.proc.kill()


def model_pods(kube: client.ApiClient, task_label: str) -> list[Any]:
    selector = f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}"
    pods = client.CoreV1Api(kube).list_namespaced_pod("default", label_selector=selector).items
    return [
        p
        for p in pods
        if p.metadata.labels.get(c.LABEL_TASK) == task_label and not p.metadata.deletion_timestamp
    ]


@pytest.mark.integration
def test_a_choice_survives_crashes_and_restarts_and_one_pod_serves_it(stack: Stack) -> None:
    stack.start()
    detection = stack.config()["models"]["object_detection"]
    assert detection["selected"] == "yolov8n"
    # The contract's options are all there (the examples select yolov8m).
    assert {"yolov8n", "yolov8s", "yolov8m", "yolov8l"} <= set(detection["options"])

    # The contract's four JavaScript examples run unchanged against a fresh stack.
    said = {name: node_example(name, stack.url) for name in EXAMPLES}
    assert "yolov8m: Medium YOLO model" in said["check-available-models.mjs"]
    assert said["switch-model.mjs"] == "Model selected: yolov8m\n"
    assert said["validate-before-selection.mjs"].startswith("Using ")
    assert said["monitor-memory.mjs"].startswith("VRAM Usage: ")

    chosen = httpx.post(
        f"{stack.url}/api/models/select",
        params={"task_type": "object_detection", "model_name": "yolov8s"},
        timeout=30,
    )
    assert chosen.status_code == 200, chosen.text

    # The operator dies in the middle of the switch: it comes back, the stack stays up.
    operator = stack.child("operator")
    assert operator is not None
    operator.kill()
    assert eventually(
        lambda: (p := stack.child("operator")) is not None and p.pid != operator.pid, 30
    )
    assert "the operator exited with code -9; restarting it" in stack.said()
    api = stack.child("api")
    assert api is not None
    api.kill()
    assert eventually(stack.answers, 60), stack.said()

    # Once quiet: exactly one pod for the task, the chosen model's, and the API agrees.
    kube = stack.kube()
    custom = client.CustomObjectsApi(kube)

    def settled() -> bool:
        pods = model_pods(kube, "object_detection")
        sel = custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, "default", c.SELECTION_PLURAL, "object-detection"
        )
        return (
            len(pods) == 1
            and pods[0].metadata.labels.get(c.LABEL_MODEL) == "yolov8s"
            and (sel.get("status") or {}).get("phase") == "Ready"
        )

    assert eventually(settled, 180), stack.said()

    # A restart of everything keeps the user's choice: defaults only fill what is missing.
    assert stack.stop() == 0
    stack.start()
    assert stack.config()["models"]["object_detection"]["selected"] == "yolov8s"
    assert "existing selection(s) kept as they are" in stack.said()


def test_manifest_selections_are_defaults_created_only() -> None:
    docs = [
        {"kind": c.CATALOG_KIND, "metadata": {"name": "default"}},
        {"kind": c.SELECTION_KIND, "metadata": {"name": "object-detection"}},
        None,
    ]
    apply, create_only = split_defaults(docs)
    assert [d["kind"] for d in apply] == [c.CATALOG_KIND]
    assert [d["kind"] for d in create_only] == [c.SELECTION_KIND]


def test_restart_backoff_doubles_to_a_cap() -> None:
    assert [restart_delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_crashed_child_is_restarted_after_its_backoff(tmp_path: Path) -> None:
    said: list[str] = []
    marker = tmp_path / "runs"
    child = Child(
        "thing",
        [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x'); raise SystemExit(3)"],
        log=said.append,
    )
    child.start({})
    assert child.proc is not None and child.proc.wait(10) == 3
    now = time.monotonic()
    child.check({}, now)
    assert said == ["the thing exited with code 3; restarting it in 1s"]
    child.check({}, now + 0.5)  # not yet
    assert marker.read_text() == "x"
    child.check({}, now + 1.0)
    assert said[-1] == "restarting the thing (restart 1)"
    assert child.proc.wait(10) == 3 and marker.read_text() == "xx"
    child.check({}, time.monotonic())
    assert said[-1].endswith("restarting it in 2s")
