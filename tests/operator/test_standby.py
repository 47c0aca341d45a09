"""A hot standby: two real operator processes, the leader SIGKILLed, the standby acts.

The standby takes the Lease once the leader stops renewing it, handles a
change made while the leader was gone, and writes nothing twice: the pod of
the selection nobody changed is the same object before and after, and each
selection ends with one pod. A leader that exits cleanly releases the Lease.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.domain import constants as c
from kube_testing import Kube, eventually
from kube_testing import tiny_catalog as catalog
from kube_testing import tiny_option as option

pytestmark = pytest.mark.integration

LEASE = "fovea-models-operator"


def test_the_standby_takes_over_from_a_killed_leader_and_writes_nothing_twice(
    kube: Kube, operator_factory: Callable[[], subprocess.Popen[bytes]]
) -> None:
    kube.apply_catalog(
        catalog({"det": {"one": option(1.0), "two": option(1.0)}, "keep": {"m": option(1.0)}})
    )
    leader = operator_factory()
    assert eventually(lambda: holder(kube) == identity(leader) or None, 60), holder(kube)
    standby = operator_factory()
    kube.select("det", "one")
    kube.select("keep", "m")
    assert eventually(lambda: len(ready_pods(kube)) == 2 or None, 120), kube.model_pods()
    kept = pod_of(kube, "keep")

    leader.kill()  # SIGKILL: no release; the standby waits out the Lease
    leader.wait()
    kube.select("det", "two")  # a change only the standby can act on
    taken = eventually(lambda: holder(kube) == identity(standby) or None, 60)
    assert taken, holder(kube)
    assert eventually(lambda: kube.status("det").get("observedGeneration") == 2 or None, 60)

    def settled() -> list[tuple[str, str]] | None:  # every pod Ready, one per selection
        pods = kube.model_pods()
        models = sorted((p["metadata"]["labels"][c.LABEL_TASK], model_of(p)) for p in pods)
        done = models == [("det", "two"), ("keep", "m")] and len(ready_pods(kube)) == 2
        return models if done else None

    assert eventually(settled, 120), [
        (p["metadata"]["name"], model_of(p)) for p in kube.model_pods()
    ]
    assert pod_of(kube, "keep")["metadata"]["uid"] == kept["metadata"]["uid"]  # never rewritten
    assert standby.poll() is None

    standby.terminate()  # a clean exit: the Lease is released for a peer to take at once
    assert standby.wait(timeout=30) == 0
    assert holder(kube) is None


def identity(proc: subprocess.Popen[bytes]) -> str:
    """The operator's default Lease identity (FOVEA_OPERATOR_IDENTITY unset)."""
    return f"{socket.gethostname()}-{proc.pid}"


def holder(kube: Kube) -> str | None:
    try:
        lease = client.CoordinationV1Api(kube.api).read_namespaced_lease(LEASE, kube.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return lease.spec.holder_identity if lease.spec else None


def model_of(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"][c.LABEL_MODEL])


def ready_pods(kube: Kube) -> list[dict[str, Any]]:
    return [
        p
        for p in kube.model_pods()
        if any(
            cond["type"] == "Ready" and cond["status"] == "True"
            for cond in (p.get("status") or {}).get("conditions") or []
        )
    ]


def pod_of(kube: Kube, task: str) -> dict[str, Any]:
    pods = [p for p in kube.model_pods() if p["metadata"]["labels"][c.LABEL_TASK] == task]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]
