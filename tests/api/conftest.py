"""Fixtures of the API's integration tests: the API served on a real port, in-process.

The cluster itself (`kubeconfig`, `namespace`) comes from tests/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from api_server import ApiServer

from fovea.api.settings import Settings
from fovea.kube import api_client
from kube_testing import Kube

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds(kubeconfig: str) -> None:
    """The generated CRDs, applied once and established."""
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    crd_dir = REPO / "manifests" / "crd"
    files = sorted(str(p) for p in crd_dir.glob("*.yaml") if p.name != "kustomization.yaml")
    assert files, "no CRDs in manifests/crd"
    args = [f"-f={f}" for f in files]
    subprocess.run(
        ["kubectl", "apply", "--server-side", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        ["kubectl", "wait", "--for=condition=Established", "--timeout=60s", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=90,
    )


@pytest.fixture
def kube(kubeconfig: str, namespace: str, crds: None) -> Kube:
    return Kube(api_client(kubeconfig), kubeconfig, namespace)


@pytest.fixture
def api_factory(kubeconfig: str, namespace: str, crds: None) -> Iterator[Callable[..., ApiServer]]:
    """Start APIs for the test's namespace (settings overridable); stopped afterwards."""
    servers: list[ApiServer] = []

    def start(**overrides: object) -> ApiServer:
        settings = Settings(
            kubeconfig=kubeconfig,
            namespace=namespace,
            reconnect_max_backoff_seconds=0.5,
            **overrides,  # type: ignore[arg-type]
        )
        server = ApiServer(settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api(api_factory: Callable[..., ApiServer]) -> ApiServer:
    """The API for the test's namespace, its cache synced."""
    server = api_factory()
    server.wait_ready()
    return server


@pytest.fixture
def operator(kubeconfig: str, namespace: str, crds: None, tmp_path: Path) -> Iterator[None]:
    """The real operator, watching only the test's namespace."""
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "FOVEA_OPERATOR_LEASE_NAMESPACE": namespace,
        "FOVEA_OPERATOR_LEASE_SECONDS": "6",
        "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
    }
    with open(tmp_path / "operator.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", "operator", "-n", namespace],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "operator.log").read_text()
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
