"""The pod status a kubelet reports, built from what the node agent observed. Pure.

The agent writes the whole status with a JSON merge patch, so conditions and
container statuses are always complete lists; condition transition times are
carried over from the previous status while a condition keeps its value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The node every process pod runs on: this machine. Each pod has an address of its
# own (`podnet`).
HOST_IP = "127.0.0.1"


def rfc3339(moment: dt.datetime | None = None) -> str:
    """Kubernetes' timestamp format (seconds, UTC, `Z`)."""
    return (moment or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: dt.datetime | None = None) -> str:
    """MicroTime, as Lease renew times use."""
    return (moment or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Terminated:
    """A finished run of the container's process."""

    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    message: str = ""
    pid: int | None = None

    def as_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.pid:
            state["containerID"] = container_id(self.pid)
        if self.message:
            state["message"] = self.message
        return state


@dataclass(frozen=True)
class Observed:
    """Everything the agent knows about its pod's one container right now."""

    phase: str  # Pending | Running | Succeeded | Failed
    start_time: str
    container: str
    image: str
    restart_count: int = 0
    running_since: str | None = None
    pid: int | None = None
    ready: bool = False
    started: bool = False
    waiting_reason: str | None = None
    waiting_message: str = ""
    terminated: Terminated | None = None  # current state (the process is not restarted)
    last_terminated: Terminated | None = None
    # The pod's init containers (their container fields), in order; empty when it has none.
    init: tuple[Observed, ...] = ()

    @property
    def completed(self) -> bool:
        """An init container's run ended with exit code 0."""
        return self.terminated is not None and self.terminated.exit_code == 0

    @property
    def initialized(self) -> bool:
        """Every init container has completed."""
        return all(item.completed for item in self.init)


def container_id(pid: int) -> str:
    """A container ID in the `<runtime>://<id>` form: here the process id."""
    return f"local://{pid}"


def _container_status(obs: Observed) -> dict[str, Any]:
    if obs.running_since is not None:
        state: dict[str, Any] = {"running": {"startedAt": obs.running_since}}
    elif obs.terminated is not None:
        state = {"terminated": obs.terminated.as_dict()}
    else:
        waiting: dict[str, str] = {"reason": obs.waiting_reason or "ContainerCreating"}
        if obs.waiting_message:
            waiting["message"] = obs.waiting_message
        state = {"waiting": waiting}
    status: dict[str, Any] = {
        "name": obs.container,
        "image": obs.image,
        "imageID": "",
        "ready": obs.ready and obs.running_since is not None,
        "started": obs.started and obs.running_since is not None,
        "restartCount": obs.restart_count,
        "state": state,
        "lastState": {},
    }
    if obs.pid and obs.running_since is not None:
        status["containerID"] = container_id(obs.pid)
    if obs.last_terminated is not None:
        status["lastState"] = {"terminated": obs.last_terminated.as_dict()}
    return status


def _init_container_status(obs: Observed) -> dict[str, Any]:
    """An init container's status: `ready` once it completed, `started` while it runs."""
    status = _container_status(obs)
    status["ready"] = obs.completed
    status["started"] = obs.running_since is not None
    return status


def conditions(
    previous: Sequence[Mapping[str, Any]], desired: Mapping[str, bool], now: str
) -> list[dict[str, Any]]:
    """Conditions with `desired` values; a transition time changes only with the value."""
    before = {c.get("type"): c for c in previous}
    result = []
    for kind, value in desired.items():
        status = "True" if value else "False"
        old = before.get(kind)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": since or now,
        }
        result.append(condition)
    return result


def pod_status(
    obs: Observed,
    previous: Mapping[str, Any],
    now: str,
    generation: int | None = None,
    *,
    pod_ip: str,
) -> dict[str, Any]:
    """The full `status` of the pod (what the agent merge-patches onto the status subresource).

    `previous` is the pod's current status (for transition times); `generation`
    its metadata.generation, recorded as the generation this status describes;
    `pod_ip` the pod's own address (`podnet`).
    """
    ready = obs.ready and obs.running_since is not None and obs.initialized
    desired = {
        "PodReadyToStartContainers": True,
        "Initialized": obs.initialized,
        "Ready": ready,
        "ContainersReady": ready,
        "PodScheduled": True,
    }
    status: dict[str, Any] = {
        "phase": obs.phase,
        "conditions": conditions(previous.get("conditions") or [], desired, now),
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": obs.start_time,
        "containerStatuses": [_container_status(obs)],
    }
    if obs.init:
        status["initContainerStatuses"] = [_init_container_status(item) for item in obs.init]
    if generation is not None:
        status["observedGeneration"] = generation
        for condition in status["conditions"]:
            condition["observedGeneration"] = generation
    incomplete = " ".join(item.container for item in obs.init if not item.completed)
    for condition in status["conditions"]:
        if condition["status"] != "False":
            continue
        if condition["type"] == "Initialized":
            condition["reason"] = "ContainersNotInitialized"
            condition["message"] = f"containers with incomplete status: [{incomplete}]"
        elif condition["type"] in ("Ready", "ContainersReady"):
            condition["reason"] = "ContainersNotReady"
            condition["message"] = f"containers with unready status: [{obs.container}]"
    return status
