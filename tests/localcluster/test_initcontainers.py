"""Init containers on the local cluster: the pure decisions and status, then real pods."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from pod_testing import create_pod, get_pod, kubectl, wait_phase

from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.initcontainers import WAITING_FOR_INIT, AfterExit, after_exit, initial
from fovea.localcluster.podstatus import Observed, Terminated, pod_status
from fovea.localcluster.rest import Rest
from kube_testing import eventually

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"
IP = "198.18.0.9"  # the pod's own address (podnet)
DONE = Terminated(exit_code=0, reason="Completed", started_at=T0, finished_at=T1, pid=5)


# --- pure -------------------------------------------------------------------------------------


def test_after_exit_follows_the_restart_policy() -> None:
    assert after_exit("Always", 0) is AfterExit.NEXT
    assert after_exit("Never", 0) is AfterExit.NEXT
    assert after_exit("Always", 1) is AfterExit.RESTART
    assert after_exit("OnFailure", 2) is AfterExit.RESTART
    assert after_exit("Never", 1) is AfterExit.FAIL


def test_initial_keeps_completed_init_containers_and_restart_counts() -> None:
    specs = [{"name": "a", "image": "img"}, {"name": "b"}, {"name": "c"}]
    previous = [
        {"name": "a", "restartCount": 2, "state": {"terminated": {"exitCode": 0}}},
        {"name": "b", "restartCount": 1, "state": {"terminated": {"exitCode": 4}}},
    ]
    a, b, c = initial(specs, previous)
    assert a.completed and a.restart_count == 2 and a.image == "img"
    assert not b.completed and b.terminated is None and b.restart_count == 1
    assert not c.completed and c.waiting_reason == WAITING_FOR_INIT
    assert initial([], previous) == ()


def _pod(init: tuple[Observed, ...], **main: Any) -> Observed:
    base = Observed(
        phase="Pending", start_time=T0, container="model", image="img", init=init,
        waiting_reason=WAITING_FOR_INIT,
    )  # fmt: skip
    return Observed(**{**base.__dict__, **main})


def _init(name: str, **fields: Any) -> Observed:
    return Observed(phase="Pending", start_time="", container=name, image="img", **fields)


def test_status_while_an_init_container_runs() -> None:
    running = _init("fetch-weights", running_since=T1, pid=9)
    waiting = _init("second", waiting_reason=WAITING_FOR_INIT)
    status = pod_status(
        _pod((_init("first", terminated=DONE), running, waiting)), {}, T1, pod_ip=IP
    )
    assert status["phase"] == "Pending"
    first, fetch, second = status["initContainerStatuses"]
    assert first["state"]["terminated"]["reason"] == "Completed" and first["ready"]
    assert fetch["state"] == {"running": {"startedAt": T1}} and fetch["started"]
    assert not fetch["ready"] and fetch["containerID"] == "local://9"
    assert second["state"] == {"waiting": {"reason": WAITING_FOR_INIT}}
    (model,) = status["containerStatuses"]
    assert model["state"] == {"waiting": {"reason": WAITING_FOR_INIT}} and not model["ready"]
    kinds = {c["type"]: c for c in status["conditions"]}
    assert kinds["Initialized"]["status"] == "False"
    assert kinds["Initialized"]["reason"] == "ContainersNotInitialized"
    assert (
        kinds["Initialized"]["message"]
        == "containers with incomplete status: [fetch-weights second]"
    )
    assert kinds["Ready"]["status"] == "False"


def test_status_once_initialized_is_ready_with_the_container() -> None:
    obs = _pod(
        (_init("fetch-weights", terminated=DONE),),
        phase="Running", running_since=T1, pid=10, ready=True, started=True, waiting_reason=None,
    )  # fmt: skip
    status = pod_status(obs, {}, T1, pod_ip=IP)
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    assert kinds["Initialized"] == kinds["Ready"] == "True"
    (fetch,) = status["initContainerStatuses"]
    assert fetch["ready"] and not fetch["started"]


def test_status_of_a_failing_init_container() -> None:
    crashed = Terminated(exit_code=3, reason="Error", started_at=T0, finished_at=T1)
    failing = _init(
        "fetch-weights", restart_count=1, last_terminated=crashed,
        waiting_reason="CrashLoopBackOff", waiting_message="back-off 2s",
    )  # fmt: skip
    status = pod_status(_pod((failing,)), {}, T1, pod_ip=IP)
    (fetch,) = status["initContainerStatuses"]
    assert fetch["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert fetch["lastState"]["terminated"]["exitCode"] == 3 and fetch["restartCount"] == 1
    assert "initContainerStatuses" not in pod_status(_pod(()), {}, T1, pod_ip=IP)


# --- on the local cluster ---------------------------------------------------------------------


def sh(name: str, script: str, mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": "local", "command": ["sh", "-c", script]}
    if mounts:
        container["volumeMounts"] = mounts
    return container


def test_init_containers_run_in_order_before_the_container(
    kubeconfig: str, namespace: str, rest: Rest, local_cluster: LocalCluster
) -> None:
    work = [{"name": "work", "mountPath": "/work"}]
    spec = {
        "restartPolicy": "Never",
        "volumes": [{"name": "work", "emptyDir": {}}],
        "initContainers": [
            sh("fetch-weights", "echo fetching; echo one > /work/a", work),
            sh("second", "test -e /work/a && cat /work/a > /work/b && echo two >> /work/b", work),
        ],
        "containers": [sh("model", "cat /work/b", work)],
    }
    create_pod(rest, namespace, "ordered", spec)
    pod = wait_phase(rest, namespace, "ordered", {"Succeeded", "Failed"})
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    statuses = pod["status"]["initContainerStatuses"]
    assert [s["name"] for s in statuses] == ["fetch-weights", "second"]
    for status in statuses:
        assert status["state"]["terminated"]["exitCode"] == 0 and status["ready"]
    kinds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert kinds["Initialized"] == "True"
    main = kubectl(kubeconfig, "logs", "-n", namespace, "ordered")
    assert main.stdout == "one\ntwo\n", main.stderr
    fetch = kubectl(kubeconfig, "logs", "-n", namespace, "ordered", "-c", "fetch-weights")
    assert fetch.stdout == "fetching\n", fetch.stderr
    state = str(local_cluster.state.root)
    cli = [sys.executable, "-m", "fovea.localcluster.cli", "logs", "ordered", "-n", namespace]
    kept = subprocess.run(
        [*cli, "-c", "fetch-weights", "--state-dir", state], capture_output=True, text=True
    )
    assert kept.stdout == "fetching\n", kept.stderr


def test_a_failing_init_container_is_retried_until_it_succeeds(namespace: str, rest: Rest) -> None:
    marker = [{"name": "work", "mountPath": "/work"}]
    spec = {
        "restartPolicy": "Always",
        "volumes": [{"name": "work", "emptyDir": {}}],
        "initContainers": [
            sh("fetch-weights", "test -e /work/tried || { touch /work/tried; exit 3; }", marker)
        ],
        "containers": [sh("model", "exec sleep 600")],
    }
    create_pod(rest, namespace, "retried", spec)
    pod = wait_phase(rest, namespace, "retried", {"Running"})
    (fetch,) = pod["status"]["initContainerStatuses"]
    assert fetch["restartCount"] == 1
    assert fetch["lastState"]["terminated"]["exitCode"] == 3
    assert fetch["state"]["terminated"]["exitCode"] == 0
    ready = eventually(lambda: _condition(get_pod(rest, namespace, "retried"), "Ready"))
    assert ready == "True"


def test_a_failing_init_container_fails_a_never_restarting_pod(namespace: str, rest: Rest) -> None:
    spec = {
        "restartPolicy": "Never",
        "initContainers": [sh("fetch-weights", "echo no such weights >&2; exit 4")],
        "containers": [sh("model", "echo never runs")],
    }
    create_pod(rest, namespace, "doomed", spec)
    pod = wait_phase(rest, namespace, "doomed", {"Failed", "Succeeded", "Running"})
    assert pod["status"]["phase"] == "Failed"
    (fetch,) = pod["status"]["initContainerStatuses"]
    assert fetch["state"]["terminated"]["exitCode"] == 4
    (model,) = pod["status"]["containerStatuses"]
    assert model["state"]["waiting"]["reason"] == WAITING_FOR_INIT
    assert _condition(pod, "Initialized") == "False"


def test_a_missing_secret_is_a_config_error_of_the_init_container(
    kubeconfig: str, namespace: str, rest: Rest
) -> None:
    fetch = sh("fetch-weights", 'test "$HF_TOKEN" = hf_secret')
    fetch["envFrom"] = [{"secretRef": {"name": "weights-credentials"}}]
    spec = {"restartPolicy": "Never", "initContainers": [fetch], "containers": [sh("m", "true")]}
    create_pod(rest, namespace, "no-secret", spec)

    def config_error() -> dict[str, Any] | None:
        pod = get_pod(rest, namespace, "no-secret")
        statuses = pod.get("status", {}).get("initContainerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting") or {}
        return waiting if waiting.get("reason") == "CreateContainerConfigError" else None

    waiting = eventually(config_error)
    assert waiting is not None
    assert waiting["message"] == 'secret "weights-credentials" not found'
    assert get_pod(rest, namespace, "no-secret")["status"]["phase"] == "Pending"
    shown = kubectl(kubeconfig, "get", "pod", "no-secret", "-n", namespace, "--no-headers")
    assert shown.stdout.split()[2] == "Init:CreateContainerConfigError", shown.stdout
    # Once the Secret exists, the same pod goes on (the agent retries every 2 s).
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "weights-credentials"},
        "stringData": {"HF_TOKEN": "hf_secret"},
    }
    rest.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body=secret)
    pod = wait_phase(rest, namespace, "no-secret", {"Succeeded", "Failed"})
    assert pod["status"]["phase"] == "Succeeded", pod["status"]


def _condition(pod: dict[str, Any], kind: str) -> str | None:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition["type"] == kind:
            return str(condition["status"])
    return None
