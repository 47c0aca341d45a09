"""/validate predicts the operator's refusal for each input it used to miss (live cluster).

Each test first asks /validate with no operator running (so the answer is the
prediction, not a quote of the operator's status), then starts the real
operator and waits for it to refuse the same selection:

- the operator's cluster default GPU-memory quota (a namespace without the
  annotation), a setting both processes read;
- a session Lease in another namespace that makes its model outrank ours;
- a node without CPU room for the model pod.

Before the demand builder (issue 24), /validate said `valid` in all three.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from api_server import ApiServer
from fovea.domain import constants as c
from fovea.domain import leases
from fovea.domain.nodes import node_capacities
from fovea.domain.resources import selection_name
from kube_testing import Kube
from kube_testing import tiny_catalog as catalog
from kube_testing import tiny_option as option
from waiting import eventually

pytestmark = pytest.mark.integration

BIG_GIB = 60.0  # only the 80 GiB GPU holds it (below its 80% threshold), and only one
OTHERS_GONE_S = 120.0


def validate(api: ApiServer) -> dict[str, Any]:
    response = api.http.post("/api/models/validate")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def others_gone(kube: Kube) -> bool | None:
    """No other namespace's model pod or selection: the API plans every namespace's (the
    operators of these tests watch their own), so an earlier test's would take the GPU."""
    selections = kube.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.SELECTION_PLURAL)
    theirs = [s for s in selections["items"] if s["metadata"]["namespace"] != kube.namespace]
    return (not kube.other_model_pods() and not theirs) or None


def answer(api: ApiServer, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """/validate's body once it is the one `wanted` (the API's watches are asynchronous)."""
    body = validate(api)
    return body if wanted(body) else None


def scheduled(kube: Kube, task: str) -> dict[str, Any]:
    status = kube.status(task)
    return next((x for x in status.get("conditions") or [] if x["type"] == "Scheduled"), {})


def refused(kube: Kube, task: str, reason: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        cond = scheduled(kube, task)
        return cond if cond.get("status") == "False" and cond.get("reason") == reason else None

    return check


@pytest.fixture
def start_operator(
    kubeconfig: str, namespace: str, crds: None, tmp_path: Path
) -> Iterator[Callable[..., None]]:
    """Start one operator watching the given namespaces (its Lease in the test's own)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(namespaces: list[str], **env: str) -> None:
        args = [arg for ns in namespaces for arg in ("-n", ns)]
        environment = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "FOVEA_OPERATOR_LEASE_NAMESPACE": namespace,
            "FOVEA_OPERATOR_LEASE_SECONDS": "6",
            "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
            **env,
        }
        log = open(tmp_path / "operator.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "fovea.cli", "operator", *args],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_cluster_default_quota(
    kube: Kube, api_factory: Callable[..., ApiServer], start_operator: Callable[..., None]
) -> None:
    kube.apply_catalog(catalog({"det": {"two": option(2.0)}}))
    kube.select("det", "two")
    api = api_factory(default_gpu_memory_quota="1")
    api.wait_ready()
    body = eventually(
        lambda: answer(api, lambda b: "det" in b["placements"]),
        what="/validate to see the selection",
    )
    assert body["valid"] is False
    assert body["placements"]["det"]["decided_by"] == "prediction"
    assert "GPU-memory quota of 1.0 GB" in body["placements"]["det"]["reason"]
    assert body["quota"]["gpu_memory_quota_gb"] == 1.0  # the default, shown as this namespace's

    start_operator([kube.namespace], FOVEA_OPERATOR_DEFAULT_GPU_MEMORY_QUOTA="1")
    cond = eventually(refused(kube, "det", "QuotaExceeded"), 60, what="the operator's refusal")
    assert "GPU-memory quota of 1.0 GB" in cond["message"]


def test_a_session_lease_in_another_namespace(
    kubeconfig: str,
    kube: Kube,
    api_factory: Callable[..., ApiServer],
    start_operator: Callable[..., None],
) -> None:
    assert eventually(lambda: others_gone(kube), OTHERS_GONE_S)
    core = client.CoreV1Api(kube.api)
    other_ns = f"lease-holder-{uuid.uuid4().hex[:6]}"
    labels = {f"{c.GROUP}/test": "true"}
    core.create_namespace({"metadata": {"name": other_ns, "labels": labels}})
    try:
        other = Kube(kube.api, kubeconfig, other_ns)
        for k in (kube, other):
            k.apply_catalog(catalog({"sum": {"big": option(BIG_GIB)}}))
            k.select("sum", "big")
        # Ours was used just now, theirs long ago: without the lease ours outranks theirs.
        kube.patch_status("sum", {"lastUsed": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
        other.patch_status("sum", {"lastUsed": "2020-01-01T00:00:00Z"})
        api = api_factory()
        api.wait_ready()
        seen = eventually(
            lambda: answer(api, lambda b: "sum" in b["placements"]),
            what="/validate to see the selection",
        )
        assert seen["valid"] is True, seen["warnings"]  # no lease yet: ours gets the GPU

        name = selection_name("sum")
        lease = leases.lease_body(name, "sum", 600, datetime.now(UTC))
        client.CoordinationV1Api(kube.api).create_namespaced_lease(other_ns, lease)
        body = eventually(
            lambda: answer(api, lambda b: not b["valid"]),
            what="/validate to see the other namespace's session lease",
        )
        assert body["placements"]["sum"]["decided_by"] == "prediction"
        assert body["placements"]["sum"]["outcome"] != "gpu"

        start_operator([kube.namespace, other_ns])
        eventually(
            lambda: kube.status("sum").get("phase") in ("Unschedulable", "Evicted") or None,
            120,
            what="the operator to refuse ours the GPU",
        )
        assert other.status("sum").get("plannedGpuIndex") is not None  # theirs holds it
    finally:
        try:
            other.delete_selection("sum")  # not left to the namespace's slow deletion
            core.delete_namespace(other_ns)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_a_node_without_cpu_room(
    kube: Kube, api_factory: Callable[..., ApiServer], start_operator: Callable[..., None]
) -> None:
    assert eventually(lambda: others_gone(kube), OTHERS_GONE_S)
    core = client.CoreV1Api(kube.api)
    nodes = kube.api.sanitize_for_serialization(core.list_node().items)
    big = next(
        n for n in nodes if n["metadata"]["labels"].get(c.NODE_LABEL_GPU_MEMORY_MIB) == "81920"
    )
    node = big["metadata"]["name"]
    kube.apply_catalog(catalog({"sum": {"big": option(BIG_GIB)}}))
    kube.select("sum", "big")
    api = api_factory()
    api.wait_ready()
    seen = eventually(
        lambda: answer(api, lambda b: "sum" in b["placements"]),
        what="/validate to see the selection",
    )
    assert seen["valid"] is True, seen["warnings"]  # the node has room yet

    # A pod of someone else's takes every CPU the node has left.
    pods = kube.api.sanitize_for_serialization(core.list_pod_for_all_namespaces().items)
    [room] = [n for n in node_capacities([big], pods) if n.name == node]
    assert room.cpu_millis > 0, room
    filler = {
        "metadata": {"name": "cpu-filler"},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "sleep",
                    "image": "busybox",
                    "command": ["sleep", "600"],
                    "resources": {"requests": {"cpu": f"{room.cpu_millis}m"}},
                }
            ],
        },
    }
    core.create_namespaced_pod(kube.namespace, filler)
    body = eventually(
        lambda: answer(api, lambda b: not b["valid"]),
        what="/validate to see the node's CPU taken",
    )
    assert body["placements"]["sum"]["decided_by"] == "prediction"
    assert "CPU" in body["placements"]["sum"]["reason"], body["placements"]["sum"]

    start_operator([kube.namespace])
    cond = eventually(refused(kube, "sum", "Unschedulable"), 60, what="the operator's refusal")
    assert "CPU" in cond["message"]
