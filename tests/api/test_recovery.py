"""The API server goes away: reads answer from the last synced view, marked stale, for
FOVEA_API_STALE_READ_SECONDS, then 503 with the contract's words, as writes do at once; it
comes back: the API recovers.

A cluster of its own (the session's keeps serving the other tests): stopped,
then started again from the same state directory, as `fovea-models cluster
down` and `up` would, on a new port; the API (not restarted) follows it.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_builders import examples_catalog
from api_server import ApiServer
from fovea.api.settings import Settings
from fovea.kube import api_client, install_cluster_scoped
from fovea.localcluster.cluster import LocalCluster
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "recovery"
CONNECTION_FAILED = {"error": "Connection to model service failed"}
STALE_READ_S = 3.0  # the test's FOVEA_API_STALE_READ_SECONDS (300 by default)


def start_cluster(state_dir: Path) -> LocalCluster:
    cluster = LocalCluster(state_dir, gpus="1x24GiB", log=lambda message: None)
    cluster.start()
    return cluster


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[list[LocalCluster]]:
    """The clusters this test starts (on one state directory), all stopped at the end."""
    clusters = [start_cluster(tmp_path / "cluster")]
    yield clusters
    for cluster in clusters:
        cluster.stop()


def test_unreachable_api_server_serves_stale_reads_then_503_then_recovers_without_restart(
    own_cluster: list[LocalCluster], tmp_path: Path
) -> None:
    first = own_cluster[0]
    kubeconfig = str(first.kubeconfig)
    install_cluster_scoped(kubeconfig)
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    subprocess.run(
        ["kubectl", "create", "namespace", NAMESPACE],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    kube = Kube(api_client(kubeconfig), kubeconfig, NAMESPACE)
    kube.apply_catalog(examples_catalog())
    kube.select("object_detection", "yolov8n")

    settings = Settings(
        kubeconfig=kubeconfig,
        namespace=NAMESPACE,
        reconnect_max_backoff_seconds=0.5,
        stale_read_seconds=STALE_READ_S,
    )
    api = ApiServer(settings).start()
    try:
        api.wait_ready()
        before = api.http.get("/api/models/config")
        assert before.status_code == 200 and "x-fovea-stale-seconds" not in before.headers
        status_before = api.http.get("/api/models/status").json()

        first.stop()
        # The view stops being current: reads answer from it, saying so; writes cannot.
        stale = eventually(
            lambda: (
                "x-fovea-stale-seconds" in (r := api.http.get("/api/models/config")).headers and r
            ),
            timeout=20,
        )
        assert stale, "the API never said its view was stale"
        assert stale.status_code == 200 and stale.json() == before.json()
        status = api.http.get("/api/models/status")
        assert status.status_code == 200 and status.json() == status_before
        refused = api.http.post("/api/models/select?task_type=object_detection&model_name=yolov8s")
        assert (refused.status_code, refused.json()) == (503, CONNECTION_FAILED)

        # Past STALE_READ_S, the view is too old to answer from.
        down = eventually(lambda: api.http.get("/api/models/config").status_code == 503, timeout=20)
        assert down, "the API kept answering 200 from a cluster that is gone"
        assert api.http.get("/api/models/config").json() == CONNECTION_FAILED
        assert api.http.get("/api/models/status").json() == CONNECTION_FAILED
        select = api.http.post("/api/models/select?task_type=object_detection&model_name=yolov8s")
        assert (select.status_code, select.json()) == (503, CONNECTION_FAILED)
        assert api.http.get("/readyz").status_code == 503
        assert api.http.get("/healthz").status_code == 200

        # The same state directory: the same data. The old API server port is taken
        # meanwhile, so the cluster comes back on a new one that only its rewritten
        # kubeconfig tells (the harder case: coming back at the same address needs only
        # the reconnects).
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            squatter.bind(("127.0.0.1", int(first.server.rsplit(":", 1)[1])))
            squatter.listen()
            own_cluster.append(start_cluster(tmp_path / "cluster"))
        assert own_cluster[1].server != first.server
        back = eventually(lambda: api.http.get("/readyz").status_code == 200, timeout=60)
        assert back, api.http.get("/readyz").text
        again = api.http.get("/api/models/config")
        assert again.json() == before.json() and "x-fovea-stale-seconds" not in again.headers
        select = api.http.post("/api/models/select?task_type=object_detection&model_name=yolov8s")
        assert select.status_code == 200, select.text
    finally:
        api.stop()
