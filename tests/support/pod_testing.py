"""Bare pods on the local cluster, for the node agent's tests (tests/localcluster)."""

from __future__ import annotations

import subprocess
from typing import Any

from fovea.localcluster.rest import Rest
from waiting import eventually

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

    def reached() -> dict[str, Any] | None:
        pod = get_pod(rest, namespace, name)
        return pod if pod.get("status", {}).get("phase") in phases else None

    return eventually(reached, POD_WAIT_S, what=f"pod {name} to reach {sorted(phases)}")
