"""`kubectl logs` on the local cluster: the API server reads the node agent's log endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pod_testing import kubectl, wait_phase

from fovea.localcluster.logserver import parse_log_path, tail_bytes
from fovea.localcluster.rest import Rest


def test_log_paths_are_the_kubelets() -> None:
    assert parse_log_path("/containerLogs/ns/pod/main") == ("ns", "pod", "main")
    assert parse_log_path("/containerLogs/ns/pod") is None
    assert parse_log_path("/stats/summary") is None


def test_tail_keeps_the_last_lines() -> None:
    data = b"one\ntwo\nthree\n"
    assert tail_bytes(data, None) == data
    assert tail_bytes(data, 2) == b"two\nthree\n"
    assert tail_bytes(data, 0) == b""
    assert tail_bytes(b"partial", 1) == b"partial"


def pod(name: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "local", "command": ["sh", "-c", script]}],
        },
    }


@pytest.fixture
def rest(kubeconfig: str) -> Rest:
    return Rest(Path(kubeconfig), pool_size=2)


def test_kubectl_logs_reads_a_finished_pod_and_its_tail(
    kubeconfig: str, namespace: str, rest: Rest
) -> None:
    rest.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        body=pod("printer", "echo one; echo two; echo three"),
    )
    wait_phase(rest, namespace, "printer", {"Succeeded"})
    whole = kubectl(kubeconfig, "logs", "-n", namespace, "printer")
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout == "one\ntwo\nthree\n"
    tail = kubectl(kubeconfig, "logs", "-n", namespace, "printer", "--tail=1")
    assert tail.stdout == "three\n"
    missing = kubectl(kubeconfig, "logs", "-n", namespace, "nobody")
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_kubectl_logs_follow_streams_until_the_process_ends(
    kubeconfig: str, namespace: str, rest: Rest
) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"
    rest.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=pod("talker", script))
    wait_phase(rest, namespace, "talker", {"Running", "Succeeded"})
    followed = kubectl(kubeconfig, "logs", "-f", "-n", namespace, "talker", timeout=60)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"line {i}" for i in range(1, 6)]
