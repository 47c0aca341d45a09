"""Fixtures that run the real operator against the local cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fovea.domain.crds import CRDS
from fovea.kube import api_client
from kube_testing import Kube, eventually

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds(kubeconfig: str) -> None:
    """The generated CRDs, applied once and established."""
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    files = sorted(str(REPO / "manifests" / "crd" / name) for name in CRDS)
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
def operator_factory(
    kubeconfig: str, namespace: str, crds: None, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start operators watching only the test's namespace (its own Lease there)."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "FOVEA_OPERATOR_LEASE_NAMESPACE": namespace,
            "FOVEA_OPERATOR_LEASE_SECONDS": "6",
            "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
        }
        log = open(tmp_path / f"operator-{len(started)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", "operator", "-n", namespace],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def operator(operator_factory: Callable[[], subprocess.Popen[bytes]], kube: Kube) -> None:
    """One operator for the test, running once it holds its Lease."""
    proc = operator_factory()
    held = eventually(lambda: _lease_holder(kube) or proc.poll() is not None, timeout=60)
    assert held and proc.poll() is None, "the operator did not start"


def _lease_holder(kube: Kube) -> str | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        lease = client.CoordinationV1Api(kube.api).read_namespaced_lease(
            "fovea-models-operator", kube.namespace
        )
    except ApiException:
        return None
    return lease.spec.holder_identity if lease.spec else None
