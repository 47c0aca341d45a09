"""The data plane outlives the control plane: etcd, then the API server, SIGKILLed in turn.

A cluster of its own (the session's keeps serving the other tests). A stand-in
model pod (tests/support/http_model.py) serves the selection through the API's
inference route; while each component is down and restarted by the cluster,
the pod keeps running and answering, and afterwards the stack is whole again
with the same pod, Ready, and the same selection, with no restart by hand.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

import http_model
from api_server import ApiServer
from fovea.api.settings import Settings
from fovea.domain.endpoints import build_service
from fovea.kube import api_client, install_cluster_scoped
from fovea.localcluster import controlplane as cp
from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.nodes import CPU_NODE_NAME
from kube_testing import Kube, eventually, tiny_catalog, tiny_option

pytestmark = pytest.mark.integration

NAMESPACE = "data-plane"
SAMPLE = {"inputs": [[0.5] * 64]}
T = TypeVar("T")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    own = LocalCluster(tmp_path / "cluster", gpus="1x24GiB", log=lambda message: None)
    own.start()
    yield own
    own.stop()


def test_ready_pods_keep_answering_while_etcd_then_the_api_server_are_killed(
    cluster: LocalCluster,
) -> None:
    kubeconfig = str(cluster.kubeconfig)
    install_cluster_scoped(kubeconfig)
    api = api_client(kubeconfig)
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    kube = Kube(api, kubeconfig, NAMESPACE)
    kube.apply_catalog(tiny_catalog({"det": {"m": tiny_option(1.0)}}))
    kube.select("det", "m")
    selection = kube.selection("det")
    name, uid = selection["metadata"]["name"], selection["metadata"]["uid"]
    eventually(lambda: _read(lambda: core.read_namespaced_service_account("default", NAMESPACE)))
    core.create_namespaced_service(NAMESPACE, build_service(name, NAMESPACE, uid, "det", "m"))
    core.create_namespaced_pod(NAMESPACE, http_model.pod("m-0", name, "m", nodeName=CPU_NODE_NAME))
    server = ApiServer(
        Settings(kubeconfig=kubeconfig, namespace=NAMESPACE, reconnect_max_backoff_seconds=0.5)
    ).start()
    try:
        server.wait_ready()
        assert eventually(lambda: _answers(server) or None, 60), "never answered"
        pod = kube.pod("m-0")
        assert pod is not None and _ready(pod)

        for component in ("etcd", "kube-apiserver"):
            pid = _component(cluster, component).process.pid
            os.kill(pid, signal.SIGKILL)
            # Answered by the pod through the route while the component is down or starting.
            answers = [_answers(server) for _ in range(10)]
            assert answers == [True] * 10, (component, answers)
            eventually(
                lambda name=component, old=pid: _restarted(cluster, name, old),
                60,
                what=f"{component} restarted by the cluster",
            )
            eventually(lambda: _whole(cluster), 60, what=f"the stack whole after {component}")
            assert cluster.failure is None
            assert cluster.restarts.get(component) == 1, cluster.restarts

        after = eventually(lambda: _read(lambda: kube.pod("m-0")), 60, what="the pod, read back")
        assert after["metadata"]["uid"] == pod["metadata"]["uid"]
        assert _ready(after), after["status"]
        assert after["status"]["containerStatuses"][0]["restartCount"] == 0
        assert kube.selection("det")["metadata"]["uid"] == uid
        assert kube.selection("det")["spec"] == selection["spec"]
        assert eventually(lambda: _answers(server) or None, 60), "no answer after the restarts"
    finally:
        server.stop()


def _component(cluster: LocalCluster, name: str) -> cp.Component:
    return next(c for c in cluster._components if c.name == name)


def _restarted(cluster: LocalCluster, name: str, old_pid: int) -> bool:
    component = _component(cluster, name)
    return component.process.pid != old_pid and component.exited() is None


def _whole(cluster: LocalCluster) -> bool:
    return all(
        c.exited() is None and cp.probe(c.health_url, c.ca_file) for c in cluster._components
    )


def _answers(server: ApiServer) -> bool:
    resp = server.http.post("/api/models/predict/det", json=SAMPLE)
    return resp.status_code == 200 and resp.json() == {"pod": "m-0"}


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _read(read: Callable[[], T]) -> T | None:
    """`read()`, or None while the API server cannot answer it."""
    try:
        return read()
    except Exception:
        return None
