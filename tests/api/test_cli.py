"""`fovea-models api`: the real command, as `make run` starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from api_builders import examples_catalog
from api_server import free_port
from kube_testing import Kube, eventually


@pytest.mark.integration
def test_the_command_serves_the_namespace_it_is_given(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    kube.apply_catalog(examples_catalog())
    port = free_port()
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    args = ["api", "--host", "127.0.0.1", "--port", str(port), "--namespace", namespace]
    with open(tmp_path / "api.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", *args], env=env, stdout=log, stderr=log
        )
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz").status_code == 200
            except httpx.TransportError:
                return proc.poll() is not None

        assert eventually(ready, 60) and proc.poll() is None, (tmp_path / "api.log").read_text()
        config = httpx.get(f"{url}/api/models/config").json()
        assert set(config["models"]) == set(examples_catalog()["tasks"])

        # An open /events stream (a browser tab) must not hold up a stop.
        lines: list[str] = []
        with httpx.stream("GET", f"{url}/api/models/events", timeout=30) as stream:
            reader = threading.Thread(target=lambda: lines.extend(stream.iter_lines()))
            reader.start()
            assert eventually(lambda: "event: sync" in lines, 10)
            proc.send_signal(signal.SIGINT)  # what `fovea-models up` sends on Ctrl-C
            reader.join(10)
            assert not reader.is_alive(), "the event stream did not end"
        assert proc.wait(3) == 0  # a graceful shutdown: the watches stopped too
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_any_cluster_configuration_it_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config either
    result = subprocess.run(
        [sys.executable, "-m", "fovea.cli", "api", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no usable cluster configuration" in result.stdout + result.stderr
