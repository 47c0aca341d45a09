"""Init containers as a kubelet runs them: the decisions, as pure functions.

A pod's `initContainers` run one at a time, in order, before its containers;
each must exit 0 before the next starts. A failed one is started again
(with the crash-loop backoff) unless the pod's `restartPolicy` is `Never`,
which fails the pod. While they run, the pod is `Pending`, its `Initialized`
condition is False and its containers wait with reason `PodInitializing`.
Sidecar init containers (`restartPolicy: Always` on an init container) are
not supported: they run like any other init container and must exit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from fovea.localcluster.podstatus import Observed, Terminated

WAITING_FOR_INIT = "PodInitializing"


class AfterExit(Enum):
    """What follows an init container's exit."""

    NEXT = "next"  # it completed: start the next one (or the containers)
    RESTART = "restart"  # it failed: start it again after the backoff
    FAIL = "fail"  # it failed under restartPolicy Never: the pod has failed


def after_exit(policy: str, exit_code: int) -> AfterExit:
    if exit_code == 0:
        return AfterExit.NEXT
    return AfterExit.FAIL if policy == "Never" else AfterExit.RESTART


def _terminated(state: Mapping[str, Any] | None) -> Terminated | None:
    if not state:
        return None
    return Terminated(
        exit_code=int(state.get("exitCode", 0)),
        reason=str(state.get("reason", "")),
        started_at=str(state.get("startedAt", "")),
        finished_at=str(state.get("finishedAt", "")),
        message=str(state.get("message", "")),
    )


def initial(
    containers: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]]
) -> tuple[Observed, ...]:
    """The init containers' state when a runner takes the pod over.

    `previous` is the pod's `status.initContainerStatuses`: one that already
    completed (after an agent restart) is not run again; the others keep
    their restart counts.
    """
    before = {status.get("name"): status for status in previous}
    result = []
    for container in containers:
        name = str(container["name"])
        status = before.get(name) or {}
        done = _terminated((status.get("state") or {}).get("terminated"))
        result.append(
            Observed(
                phase="Pending",
                start_time="",
                container=name,
                image=str(container.get("image", "")),
                restart_count=int(status.get("restartCount", 0)),
                terminated=done if done is not None and done.exit_code == 0 else None,
                waiting_reason=WAITING_FOR_INIT,
            )
        )
    return tuple(result)


def replace_at(items: tuple[Observed, ...], index: int, item: Observed) -> tuple[Observed, ...]:
    """`items` with the one at `index` replaced."""
    return (*items[:index], item, *items[index + 1 :])
