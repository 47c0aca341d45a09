"""Fetch progress lands in the selection's status.runtime.weights on the real API server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fovea.domain import constants as c
from fovea.domain.resources import RuntimeReport, selection_name
from fovea.kube import api_client
from fovea.model_pod.report import Reporter, selection_patcher
from kube_testing import Kube
from weight_servers import HttpFileServer, write_safetensors

pytestmark = pytest.mark.integration

TASK = "object_detection"
POD = "od-model-7f9c-abcde"


@pytest.fixture
def kube(kubeconfig: str, namespace: str, selection_crds: None) -> Kube:
    return Kube(api_client(kubeconfig), kubeconfig, namespace)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[HttpFileServer, str, int]]:
    root = tmp_path / "www"
    digest = write_safetensors(root / "w.safetensors", {"w": (128, 128)})
    with HttpFileServer(root) as server:
        yield server, digest, (root / "w.safetensors").stat().st_size


def fetch_as_the_init_container(
    kube: Kube, uri: str, cache: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`fovea-models fetch-weights` with the environment the operator gives the container."""
    env = {
        **os.environ,
        "KUBECONFIG": kube.kubeconfig,
        c.ENV_SELECTION: selection_name(TASK),
        c.ENV_NAMESPACE: kube.namespace,
        c.ENV_POD_NAME: POD,
    }
    command = [sys.executable, "-P", "-m", "fovea.cli", "fetch-weights", "--source", uri]
    return subprocess.run(
        [*command, "--cache", str(cache), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def weights_of(kube: Kube) -> dict[str, Any]:
    return dict((kube.status(TASK).get("runtime") or {}).get("weights") or {})


def test_progress_then_cached_in_the_selection_status(
    kube: Kube, served: tuple[HttpFileServer, str, int], tmp_path: Path
) -> None:
    server, digest, size = served
    kube.select(TASK, "yolo")
    kube.patch_status(TASK, {"phase": "Loading", "message": "by the operator"})
    # Two 503s and a 1 s backoff: the fetch stays in Fetching long enough to be seen.
    server.faults.statuses["/w.safetensors"] = [503, 503]
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            weights = weights_of(kube)
            if weights and (not seen or weights != seen[-1]):
                seen.append(weights)
            done.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    uri = f"{server.url}/w.safetensors"
    result = fetch_as_the_init_container(
        kube, uri, tmp_path / "cache", "--sha256", digest, "--backoff-seconds", "1"
    )
    done.set()
    watcher.join(timeout=10)
    assert result.returncode == 0, result.stderr

    status = kube.status(TASK)
    weights = status["runtime"]["weights"]
    assert weights["phase"] == "Cached"
    assert weights["source"] == uri and weights["sha256"] == digest
    assert weights["bytesDone"] == weights["bytesTotal"] == weights["fetchedBytes"] == size
    assert weights["updatedAt"].endswith("Z")
    assert status["runtime"]["pod"] == POD and status["runtime"]["state"] == "Loading"
    assert status["phase"] == "Loading" and status["message"] == "by the operator"
    fetching = [w for w in seen if w["phase"] == "Fetching"]
    assert fetching, seen
    assert any("HTTP 503" in w["message"] and "retry" in w["message"] for w in fetching)

    # The model container's reports (merge patches of status.runtime) leave weights alone.
    reporter = Reporter(selection_patcher(kube.api, kube.namespace, selection_name(TASK)))
    reporter.start()
    reporter.set(RuntimeReport(state="Ready", pod=POD, model_id="yolo", device="cpu"))
    assert reporter.wait_delivered(15)
    reporter.stop()
    runtime = kube.status(TASK)["runtime"]
    assert runtime["state"] == "Ready" and runtime["weights"] == weights

    # The next start finds the weights cached: 0 bytes fetched.
    again = fetch_as_the_init_container(kube, uri, tmp_path / "cache", "--sha256", digest)
    assert again.returncode == 0, again.stderr
    cached = weights_of(kube)
    assert cached["phase"] == "Cached" and cached["fetchedBytes"] == 0
    assert "bytesPerSecond" not in cached  # sent as null: removed


def test_a_failed_fetch_says_why_in_the_status(
    kube: Kube, served: tuple[HttpFileServer, str, int], tmp_path: Path
) -> None:
    server, _, _ = served
    kube.select(TASK, "yolo")
    result = fetch_as_the_init_container(kube, f"{server.url}/absent.bin", tmp_path / "cache")
    assert result.returncode == 1
    weights = weights_of(kube)
    assert weights["phase"] == "Failed"
    assert weights["message"] == f"{server.url}/absent.bin not found (404)"
    assert weights["fetchedBytes"] == 0
