"""Several teams on one cluster: the real operator watching several namespaces.

- A namespace whose ResourceQuota allows no pods refuses every pod creation:
  its selections carry the API server's message, and a model switch in
  another namespace still becomes Ready.
- A namespace that stays Terminating (an object with a finalizer that never
  ends) is skipped, and stalls no one.
- Two tenants with GPU-memory quotas compete: each is held to its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from fovea.kube import api_client
from kube_testing import Kube, eventually
from kube_testing import tiny_catalog as catalog
from kube_testing import tiny_option as option

pytestmark = pytest.mark.integration

HOLD = f"{c.GROUP}/test-hold"  # a finalizer nothing ever removes but the test's teardown
READY_S = 180.0  # generous: model pods import torch on a shared CPU


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((x for x in status.get("conditions") or [] if x["type"] == kind), {})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Tenants:
    """Extra namespaces for one test, and the operator that watches them all."""

    def __init__(self, kubeconfig: str, home: str, logs: Path) -> None:
        self.kubeconfig, self.home, self.logs = kubeconfig, home, logs
        self.api = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.created: list[str] = []
        self.held: list[tuple[Kube, str, str]] = []  # (kube, plural, name) with HOLD
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()

    def namespace(self, prefix: str, annotations: dict[str, str] | None = None) -> Kube:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        meta = {"name": name, "labels": {f"{c.GROUP}/test": "true"}}
        self.core.create_namespace({"metadata": {**meta, "annotations": annotations or {}}})
        self.created.append(name)
        return Kube(self.api, self.kubeconfig, name)

    def kube(self, name: str) -> Kube:
        return Kube(self.api, self.kubeconfig, name)

    def start_operator(self, namespaces: list[str]) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "FOVEA_OPERATOR_LEASE_NAMESPACE": self.home,
            "FOVEA_OPERATOR_LEASE_SECONDS": "6",
            "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
            "FOVEA_OPERATOR_METRICS_PORT": str(self.metrics_port),
        }
        args = [arg for ns in [self.home, *namespaces] for arg in ("-n", ns)]
        log = open(self.logs / "operator.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", "operator", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        coordination = client.CoordinationV1Api(self.api)

        def holding() -> bool:
            try:
                lease = coordination.read_namespaced_lease("fovea-models-operator", self.home)
            except ApiException:
                return False
            return bool(lease.spec and lease.spec.holder_identity)

        assert eventually(lambda: holding() or self.proc.poll() is not None, timeout=60)  # type: ignore[union-attr]
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return (self.logs / "operator.log").read_text(errors="replace")[-4000:]

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the operator's /metrics (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{"):
                head, value = line.rsplit(" ", 1)
                found = ",".join(sorted(head[len(name) + 1 : -1].split(",")))
                if found == want:
                    return float(value)
        return 0.0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for kube, plural, name in self.held:
            try:
                kube.custom.patch_namespaced_custom_object(
                    c.GROUP,
                    c.VERSION,
                    kube.namespace,
                    plural,
                    name,
                    {"metadata": {"finalizers": None}},
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
        for name in self.created:
            try:
                self.core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def tenants(kubeconfig: str, namespace: str, crds: None, tmp_path: Path) -> Iterator[Tenants]:
    made = Tenants(kubeconfig, namespace, tmp_path)
    yield made
    made.close()


def ready_with(kube: Kube, task: str, model: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        status = kube.status(task)
        return status if status.get("phase") == "Ready" and status.get("model") == model else None

    return check


def switch_becomes_ready(kube: Kube) -> None:
    """Select a model, wait for Ready, switch to another, wait for Ready again."""
    kube.select("det", "one")
    first = eventually(ready_with(kube, "det", "one"), timeout=READY_S, interval=0.5)
    assert first is not None, kube.status("det")
    kube.select("det", "two")
    second = eventually(ready_with(kube, "det", "two"), timeout=READY_S, interval=0.5)
    assert second is not None, kube.status("det")
    assert second["pod"] != first["pod"]


def test_a_namespace_whose_quota_refuses_every_pod_stalls_no_one(
    tenants: Tenants, kube: Kube
) -> None:
    noplace = tenants.namespace("noplace")
    noplace.core.create_namespaced_resource_quota(
        noplace.namespace, {"metadata": {"name": "noplace"}, "spec": {"hard": {"pods": "0"}}}
    )
    quota_known = eventually(
        lambda: (
            noplace.core.read_namespaced_resource_quota("noplace", noplace.namespace).status.hard
        )
    )
    assert quota_known, "the ResourceQuota controller never set the quota's status"
    noplace.apply_catalog(catalog({t: {"small": option(1.0)} for t in ("a", "b", "c")}))
    for task in ("a", "b", "c"):
        noplace.select(task, "small")
    kube.apply_catalog(catalog({"det": {"one": option(1.0), "two": option(2.0)}}))
    tenants.start_operator([noplace.namespace])

    switch_becomes_ready(kube)

    def refused(task: str) -> dict[str, Any] | None:
        status = noplace.status(task)
        scheduled = condition(status, "Scheduled")
        return status if "exceeded quota: noplace" in scheduled.get("message", "") else None

    for task in ("a", "b", "c"):
        status = eventually(lambda t=task: refused(t))  # type: ignore[misc]
        assert status is not None, noplace.status(task)
        scheduled = condition(status, "Scheduled")
        assert scheduled["status"] == "False" and scheduled["reason"] == "PodRefused"
        assert "requested: pods=1, used: pods=0, limited: pods=0" in scheduled["message"]
        assert status["phase"] == "Pending"
    assert noplace.model_pods() == []
    failures = tenants.metric(
        "fovea_operator_write_failures_total", namespace=noplace.namespace, write="create-pod"
    )
    assert failures >= 3
    assert (
        tenants.metric(
            "fovea_operator_write_failures_total", namespace=kube.namespace, write="create-pod"
        )
        == 0
    )
    assert "pass failed" not in tenants.log()

    # The cause goes away: each refused pod is retried on its own backoff and created.
    noplace.core.patch_namespaced_resource_quota(
        "noplace", noplace.namespace, {"spec": {"hard": {"pods": "10"}}}
    )
    created = eventually(lambda: len(noplace.model_pods()) == 3 or None, timeout=120)
    assert created, [noplace.status(t) for t in ("a", "b", "c")]
    for task in ("a", "b", "c"):
        placed = eventually(
            lambda t=task: condition(noplace.status(t), "Scheduled").get("reason") == "Placed"
        )
        assert placed, noplace.status(task)


def test_a_terminating_namespace_is_skipped_and_stalls_no_one(tenants: Tenants, kube: Kube) -> None:
    ending = tenants.namespace("ending")
    ending.apply_catalog(catalog({"a": {"small": option(1.0)}}))
    ending.select("a", "small")
    # Finalizers that never end keep both objects, so the namespace stays Terminating
    # with a selection that still resolves and would want a pod.
    for plural, name in ((c.CATALOG_PLURAL, "default"), (c.SELECTION_PLURAL, selection_name("a"))):
        ending.custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, ending.namespace, plural, name, {"metadata": {"finalizers": [HOLD]}}
        )
        tenants.held.append((ending, plural, name))
    tenants.core.delete_namespace(ending.namespace)
    terminating = eventually(
        lambda: tenants.core.read_namespace(ending.namespace).status.phase == "Terminating"
    )
    assert terminating
    kube.apply_catalog(catalog({"det": {"one": option(1.0), "two": option(2.0)}}))
    tenants.start_operator([ending.namespace])

    switch_becomes_ready(kube)

    assert ending.model_pods() == []
    assert (
        tenants.metric(
            "fovea_operator_write_failures_total", namespace=ending.namespace, write="create-pod"
        )
        == 0
    )
    assert "pass failed" not in tenants.log()


def test_two_tenants_with_gpu_memory_quotas_are_each_held_to_their_own(
    tenants: Tenants, kube: Kube
) -> None:
    small = tenants.namespace("small", {c.ANNOTATION_GPU_MEMORY_QUOTA: "3Gi"})
    large = tenants.namespace("large", {c.ANNOTATION_GPU_MEMORY_QUOTA: "4"})
    for team in (small, large):
        team.apply_catalog(catalog({t: {"m": option(2.0)} for t in ("x", "y")}))
    small.select("x", "m", priority=500)
    small.select("y", "m", priority=100)
    large.select("x", "m", priority=100)
    large.select("y", "m", priority=100)
    tenants.start_operator([small.namespace, large.namespace])

    over = eventually(
        lambda: s if (s := small.status("y")).get("phase") == "Unschedulable" else None
    )
    assert over is not None, small.status("y")
    scheduled = condition(over, "Scheduled")
    assert scheduled["reason"] == "QuotaExceeded"
    assert "3.0 GB" in scheduled["message"] and small.namespace in scheduled["message"]
    assert eventually(lambda: small.status("x").get("node"))
    for task in ("x", "y"):  # the other tenant has room for both: untouched
        assert eventually(lambda t=task: large.status(t).get("node")), large.status(task)  # type: ignore[misc]
    assert len(small.model_pods()) == 1
    assert tenants.metric(
        "fovea_namespace_gpu_memory_quota_gb", namespace=small.namespace
    ) == pytest.approx(3.0)
    assert (
        tenants.metric("fovea_namespace_quota_exceeded_selections", namespace=small.namespace) == 1
    )

    # The platform team raises the quota: the refused selection is placed.
    tenants.core.patch_namespace(
        small.namespace, {"metadata": {"annotations": {c.ANNOTATION_GPU_MEMORY_QUOTA: "4Gi"}}}
    )
    assert eventually(lambda: small.status("y").get("node")), small.status("y")
    assert len(small.model_pods()) == 2
