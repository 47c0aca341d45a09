"""Session leases through the API, as Kubernetes Leases the operator reads (real cluster)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes import client

from api_builders import examples_catalog
from api_server import ApiServer
from fovea.domain import leases
from fovea.operator.cluster import Cluster
from fovea.operator.decisions import World
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration

TASK = "object_detection"
NAME = "fovea-session-object-detection"


def test_a_lease_is_a_kubernetes_lease_renewed_read_by_the_operator_and_ended(
    kube: Kube, api: ApiServer
) -> None:
    kube.apply_catalog(examples_catalog())
    kube.select(TASK, "yolov8n")
    # The API's cache synced before the catalog existed: wait until its watch brings it.
    assert eventually(lambda: api.http.get("/api/models/config").status_code == 200, 20)
    coordination = client.CoordinationV1Api(kube.api)

    held = api.http.post(f"/api/models/lease/{TASK}?ttl=120")
    assert held.status_code == 200, held.text
    assert held.json()["lease"] == NAME and held.json()["ttl"] == 120
    lease = coordination.read_namespaced_lease(NAME, kube.namespace)  # shows in kubectl
    assert lease.spec.lease_duration_seconds == 120
    assert lease.metadata.labels[leases.LABEL_SESSION] == "true"
    first = lease.spec.renew_time

    renewed = api.http.post(f"/api/models/lease/{TASK}?ttl=300")
    assert renewed.status_code == 200, renewed.text
    lease = coordination.read_namespaced_lease(NAME, kube.namespace)
    assert lease.spec.lease_duration_seconds == 300 and lease.spec.renew_time >= first

    # The operator's snapshot counts it as live for the task's selection.
    assert _operator_world(kube).session_leases == {f"{kube.namespace}/object-detection"}

    ended = api.http.delete(f"/api/models/lease/{TASK}")
    assert ended.status_code == 200 and ended.json()["message"] == "Session lease ended"
    assert api.http.delete(f"/api/models/lease/{TASK}").json()["message"] == "No session lease"
    assert _operator_world(kube).session_leases == frozenset()

    assert api.http.post("/api/models/lease/nope").status_code == 400
    too_short = api.http.post(f"/api/models/lease/{TASK}?ttl=1")
    assert too_short.status_code == 400 and "error" in too_short.json()


def _operator_world(kube: Kube) -> World:
    """The operator's snapshot, from a watch-fed cache of its own (as the operator plans)."""
    cluster = Cluster(kube.api, [kube.namespace], "fovea-model-pod")
    cluster.start()
    try:
        assert cluster.cache.wait_synced(30), cluster.cache.unsynced()
        return cluster.snapshot(datetime.now(UTC))
    finally:
        cluster.stop()
