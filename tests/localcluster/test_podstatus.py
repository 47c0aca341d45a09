"""The pod status the node agent writes (pure)."""

from __future__ import annotations

from fovea.localcluster.podstatus import Observed, Terminated, conditions, pod_status

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"
IP = "198.18.0.9"  # the pod's own address (podnet)


def test_running_and_ready() -> None:
    obs = Observed(
        phase="Running", start_time=T0, container="c", image="img", running_since=T0, pid=42,
        ready=True, started=True,
    )  # fmt: skip
    status = pod_status(obs, {}, T0, generation=1, pod_ip="198.18.0.7")
    assert status["phase"] == "Running"
    assert status["hostIP"] == "127.0.0.1" and status["hostIPs"] == [{"ip": "127.0.0.1"}]
    assert status["podIP"] == "198.18.0.7" and status["podIPs"] == [{"ip": "198.18.0.7"}]
    assert status["startTime"] == T0 and status["observedGeneration"] == 1
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    assert kinds == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    (container,) = status["containerStatuses"]
    assert container["state"] == {"running": {"startedAt": T0}}
    assert container["ready"] and container["containerID"] == "local://42"


def test_crash_loop_keeps_last_state_and_is_not_ready() -> None:
    crashed = Terminated(exit_code=3, reason="Error", started_at=T0, finished_at=T1, pid=7)
    obs = Observed(
        phase="Running", start_time=T0, container="c", image="img", restart_count=2,
        ready=True, started=True, waiting_reason="CrashLoopBackOff", last_terminated=crashed,
    )  # fmt: skip
    status = pod_status(obs, {}, T1, pod_ip=IP)
    (container,) = status["containerStatuses"]
    assert container["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert container["lastState"]["terminated"]["exitCode"] == 3
    assert container["lastState"]["terminated"]["containerID"] == "local://7"
    assert container["restartCount"] == 2
    assert not container["ready"] and not container["started"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"


def test_terminated_state() -> None:
    done = Terminated(exit_code=0, reason="Completed", started_at=T0, finished_at=T1, pid=9)
    obs = Observed(phase="Succeeded", start_time=T0, container="c", image="", terminated=done)
    state = pod_status(obs, {}, T1, pod_ip=IP)["containerStatuses"][0]["state"]
    assert state["terminated"]["reason"] == "Completed" and state["terminated"]["exitCode"] == 0


def test_transition_time_changes_only_with_the_value() -> None:
    first = conditions([], {"Ready": False}, T0)
    assert first[0]["lastTransitionTime"] == T0
    same = conditions(first, {"Ready": False}, T1)
    assert same[0]["lastTransitionTime"] == T0
    flipped = conditions(same, {"Ready": True}, T1)
    assert flipped[0]["lastTransitionTime"] == T1 and flipped[0]["status"] == "True"
