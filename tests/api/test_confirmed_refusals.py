"""A refusal that rests on the API's cache is confirmed against the API server first.

The API answers from a watch-fed cache, which trails a write by the time its
event takes to arrive (under CI's load, long enough for a select right after
`kubectl apply` of the catalog to be refused: 500 "ModelCatalog not found").
Here the cache is trailing by construction: it synced before the test's
writes and was then stopped, so it never sees them. Every write made with
the Kubernetes client after that is unknown to it, and the API must still
act on what the API server holds (`fovea.api.confirm`). The API server is
the independent observer of what was written.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fovea.api.app import create_app
from fovea.api.cache import ClusterCache
from fovea.api.clients import ClientSource
from fovea.api.settings import Settings
from kube_testing import Kube, mlp_option

pytestmark = pytest.mark.integration

CATALOG = {"tasks": {"det": {"options": {"ten": mlp_option(10)}}}}


@pytest.fixture
def trailing(kubeconfig: str, namespace: str, crds: None) -> Iterator[TestClient]:
    """The app over a cache that synced with an empty namespace and then stopped."""
    settings = Settings(kubeconfig=kubeconfig, namespace=namespace, cluster_wide=False)
    cache = ClusterCache(ClientSource(kubeconfig), namespace, cluster_wide=False)
    cache.start()
    try:
        assert cache.wait_synced(30)
    finally:
        cache.stop()
    assert cache.snapshot.state.catalog is None  # it saw no catalog, and never will
    with TestClient(create_app(settings, cache=cache)) as http:
        yield http


def _spec(kube: Kube, task: str) -> dict[str, Any]:
    return dict(kube.selection(task)["spec"])


def test_a_select_right_after_the_catalog_is_applied_is_written(
    kube: Kube, trailing: TestClient
) -> None:
    # Before the catalog exists, the refusal is confirmed, and stands: nothing is written.
    refused = trailing.post("/api/models/select?task_type=det&model_name=ten")
    assert refused.status_code == 500, refused.text
    assert "ModelCatalog 'default' not found" in refused.json()["error"]
    assert kube.selections() == []

    kube.apply_catalog(CATALOG)
    answer = trailing.post("/api/models/select?task_type=det&model_name=ten")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_id"] == "mlp-10"
    assert _spec(kube, "det")["model"] == "ten"

    # What the API server's catalog lacks is refused as before, and changes nothing.
    unknown = trailing.post("/api/models/select?task_type=det&model_name=eleven")
    assert unknown.status_code == 404, unknown.text
    no_task = trailing.post("/api/models/select?task_type=seg&model_name=ten")
    assert no_task.status_code == 400, no_task.text
    assert [s["spec"]["model"] for s in kube.selections()] == ["ten"]


def test_load_and_unload_of_a_selection_made_with_kubectl(kube: Kube, trailing: TestClient) -> None:
    kube.apply_catalog(CATALOG)
    none = trailing.post("/api/models/load/det")  # confirmed: none selected yet
    assert none.status_code == 400 and "No model selected" in none.json()["error"]
    kube.select("det", "ten", load_policy="onDemand")

    loaded = trailing.post("/api/models/load/det")
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["model_name"] == "ten"
    spec = _spec(kube, "det")
    assert spec["wanted"] is True and spec["loadRequestedAt"]

    unloaded = trailing.post("/api/models/unload/det")
    assert unloaded.status_code == 200, unloaded.text
    assert _spec(kube, "det")["wanted"] is False


def test_a_request_waits_for_the_cache_only_when_the_api_server_disagrees(
    kube: Kube, trailing: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fovea.api.gateway")
    kube.apply_catalog(CATALOG)
    kube.select("det", "ten")

    # A task in no catalog: refused at once with the API server's reason (the cache's
    # would have been "ModelCatalog 'default' not found"), without a wait.
    unknown = trailing.post("/api/models/predict/seg", json={"inputs": [[0.5] * 64]})
    assert unknown.status_code == 404, unknown.text
    assert "Unknown task type 'seg' (the catalog has: det)" in unknown.json()["error"]
    assert "has not seen" not in caplog.text

    # A selected task: the API server holds what the cache lacks, so the request waits
    # for the cache to catch up (this one never does: it was stopped) before refusing.
    trailed = trailing.post("/api/models/predict/det", json={"inputs": [[0.5] * 64]})
    assert trailed.status_code == 503, trailed.text
    assert "the cache has not seen task det's catalog or selection yet" in caplog.text


def _catalog_reads(kube: Kube) -> float:
    """GETs of ModelCatalogs the API server has answered: its own counter (/metrics)."""
    text = subprocess.run(
        ["kubectl", "get", "--raw", "/metrics"],
        env={**os.environ, "KUBECONFIG": kube.kubeconfig},
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and 'resource="modelcatalogs"' in line
            and 'verb="GET"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_repeated_bad_request_is_confirmed_once_not_each_time(
    kube: Kube, trailing: TestClient
) -> None:
    kube.apply_catalog(CATALOG)
    before = _catalog_reads(kube)
    started = time.monotonic()
    answers = [trailing.post("/api/models/predict/seg", json={}) for _ in range(20)]
    took = time.monotonic() - started
    assert {a.status_code for a in answers} == {404}
    reads = _catalog_reads(kube) - before
    # One read per CONFIRMED_S (0.5 s) at most, not one per request (20).
    assert 1 <= reads <= 1 + took / 0.5, (reads, took)
