"""Fixtures of the model pod's tests.

The fast tests need no cluster: models are tiny and built from configs with
random weights, on the CPU, with the model hub switched off. The integration
tests use the real API server (`kubeconfig`, `namespace` from
tests/conftest.py) and apply the CRDs generated from `fovea.domain`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fovea.domain import constants as c
from fovea.model_pod.adapters.base import ModelSpec
from fovea.model_pod.identity import Identity
from waiting import eventually

# The subcommand exactly as `fovea-models model-pod` runs it (configure, then run),
# without importing every other subcommand the CLI registers.
MODEL_POD_COMMAND = [
    sys.executable,
    "-c",
    "import argparse, sys\n"
    "from fovea.model_pod import main\n"
    "parser = argparse.ArgumentParser()\n"
    "main.configure(parser)\n"
    "sys.exit(main.run(parser.parse_args(sys.argv[1:])))",
]
START_ATTEMPTS = 3
ANSWER_TIMEOUT_S = 120.0


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a model hub: this machine has none, and CI must not either."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("YOLO_OFFLINE", "1")


@pytest.fixture
def make_identity() -> Callable[..., Identity]:
    """An Identity for a model served on the CPU, reporting nowhere unless told."""

    def make(
        framework: str,
        model_id: str,
        architecture: str | None = None,
        allow_random_weights: bool = True,
        batch_size: int = 2,
        device: str = "cpu",
        simulated_gpu: bool = False,
        declared_vram_gb: float | None = None,
        selection: str | None = None,
        namespace: str | None = None,
    ) -> Identity:
        spec = ModelSpec(
            task="test_task",
            model_id=model_id,
            architecture=architecture,
            allow_random_weights=allow_random_weights,
            batch_size=batch_size,
            declared_vram_gb=declared_vram_gb,
        )
        return Identity(
            spec=spec,
            framework=framework,
            model="test-option",
            planned_device=device,
            simulated_gpu=simulated_gpu,
            selection=selection,
            namespace=namespace,
            pod_name="test-pod",
            port=8080,
        )

    return make


@pytest.fixture(scope="session")
def selection_crds(kubeconfig: str) -> None:
    """The CRDs generated from fovea.domain, applied and established."""
    from fovea.domain.crds import rendered_files

    env = {**os.environ, "KUBECONFIG": kubeconfig}
    manifest = "\n---\n".join(rendered_files().values())
    subprocess.run(
        ["kubectl", "apply", "--server-side", "--force-conflicts", "-f", "-"],
        input=manifest,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    subprocess.run(
        ["kubectl", "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        env=env,
        check=True,
        capture_output=True,
        timeout=90,
    )


@pytest.fixture
def model_pod_command() -> list[str]:
    return list(MODEL_POD_COMMAND)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ModelPodProcess:
    """A running `model-pod` command, its port and its log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def start_model_pod(tmp_path: Path) -> Iterator[Callable[..., ModelPodProcess]]:
    """Start the command with an environment; return once it answers as itself.

    A free port can be taken by someone else between choosing and binding it
    (other suites run servers too): the process then exits, or another server
    answers; either way it is started again on another port.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], *args: str) -> ModelPodProcess:
        for _ in range(START_ATTEMPTS):
            port = free_port()
            log = tmp_path / f"model-pod-{len(started)}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [*MODEL_POD_COMMAND, "--host", "127.0.0.1", *args],
                    env={**env, c.ENV_PORT: str(port)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(process)
            if _answers_as(env[c.ENV_TASK], port, process):
                return ModelPodProcess(process, port, log)
            process.kill()
            process.wait()
        pytest.fail(f"model-pod did not start in {START_ATTEMPTS} attempts: {log.read_text()}")

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers_as(task: str, port: int, process: subprocess.Popen[bytes]) -> bool:
    def verdict() -> tuple[bool] | None:
        """(whether it is our model pod) once something answers or it exited; None before."""
        if process.poll() is not None:
            return (False,)
        try:
            info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=2)
        except httpx.TransportError:
            return None
        try:
            return (info.status_code == 200 and info.json().get("task") == task,)
        except ValueError:
            return (False,)  # someone else's server on that port

    answered = eventually(verdict, ANSWER_TIMEOUT_S)
    return answered is not None and answered[0]
