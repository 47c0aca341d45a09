"""Bare pods on the local cluster, for the node agent's tests (tests/localcluster)."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from fovea.localcluster.rest import Rest

POD_WAIT_S = 60.0


def kubectl(kubeconfig: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def create_pod(rest: Rest, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    rest.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=body)


def get_pod(rest: Rest, namespace: str, name: str) -> dict[str, Any]:
    return rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")


def wait_phase(rest: Rest, namespace: str, name: str, phases: set[str]) -> dict[str, Any]:
    """The pod once its phase is one of `phases` (the test fails after a minute)."""
    deadline = time.monotonic() + POD_WAIT_S
    while True:
        pod = get_pod(rest, namespace, name)
        if pod.get("status", {}).get("phase") in phases:
            return pod
        if time.monotonic() > deadline:
            pytest.fail(f"pod {name} never reached {phases}: {pod.get('status')}")
        time.sleep(0.1)
