"""Trust under faults (issue 9), against the real API server, operator and node agent.

Concurrent selects never answer 5xx and settle on one model; the top-level
device fields are those of the real device; /validate agrees with the
operator across namespaces; a failed cache rebuild is not served as current;
a task whose name collides with another's selection is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from api_server import ApiServer
from fovea.api import responses
from fovea.domain import constants as c
from fovea.kube import api_client
from kube_testing import Kube, eventually
from kube_testing import tiny_catalog as catalog
from kube_testing import tiny_option as option

pytestmark = pytest.mark.integration

SELECT = "/api/models/select"
TASK = "det"
SETTLE_S = 180.0


def models(api: ApiServer) -> dict[str, Any]:
    """/config's tasks; empty while the catalog has not reached the cache (a 500 then)."""
    body: dict[str, Any] = api.http.get("/api/models/config").json()
    return dict(body.get("models") or {})


def live_model_pods(kube: Kube) -> list[dict[str, Any]]:
    return [p for p in kube.model_pods() if not p["metadata"].get("deletionTimestamp")]


def real_gpu_nodes(kube: Kube) -> list[str]:
    """Nodes with a GPU that is not simulated, read from the Node objects themselves."""
    nodes = client.CoreV1Api(kube.api).list_node().items
    return [
        n.metadata.name
        for n in nodes
        if (n.metadata.labels or {}).get(c.NODE_LABEL_GPU_COUNT)
        and (n.metadata.labels or {}).get(c.NODE_LABEL_SIMULATED) != "true"
    ]


# --- item 2 and 5: concurrent selects; the real device ------------------------------------------


def test_concurrent_selects_never_answer_5xx_and_settle_on_one_model(
    kube: Kube, operator: None, api: ApiServer
) -> None:
    kube.apply_catalog(catalog({TASK: {"one": option(1.0), "two": option(2.0)}}))
    assert eventually(lambda: TASK in models(api), 20)
    choices = ["one", "two"] * 100

    def select(model: str) -> int:
        with httpx.Client(base_url=api.url, timeout=60) as http:
            answer = http.post(SELECT, params={"task_type": TASK, "model_name": model})
            return answer.status_code

    with ThreadPoolExecutor(32) as pool:
        codes = Counter(pool.map(select, choices))
    assert codes == {200: 200}, codes

    final = kube.selection(TASK)["spec"]["model"]

    def agreed() -> dict[str, Any] | None:
        status = kube.status(TASK)
        pods = live_model_pods(kube)
        body: dict[str, Any] = api.http.get("/api/models/status").json()
        loaded = body["loaded_models"].get(TASK)
        if (
            status.get("phase") == "Ready"
            and status.get("model") == final
            and len(pods) == 1
            and pods[0]["metadata"]["labels"].get(c.LABEL_MODEL) == final
            and loaded is not None
            and loaded["pod"] == pods[0]["metadata"]["name"]
        ):
            return body
        return None

    body = eventually(agreed, SETTLE_S)
    assert body is not None, (kube.status(TASK), [p["metadata"]["name"] for p in kube.model_pods()])
    assert api.http.get("/api/models/config").json()["models"][TASK]["selected"] == final

    # Item 5: the top-level fields are true of the real device, by the Node objects and
    # by what the model pod itself reported.
    real = real_gpu_nodes(kube)
    report = kube.status(TASK)["runtime"]
    assert body["cuda_available"] is bool(real)
    assert api.http.get("/api/models/config").json()["cuda_available"] is bool(real)
    runs_on_cuda = str(report.get("device")).startswith("cuda") and not report.get("simulatedGpu")
    assert body["device"] == (report["device"] if runs_on_cuda else "cpu")
    if not real:  # the local cluster: simulated GPUs, still visible as such
        assert body["simulated_gpu"] is True
        assert body["device"] == "cpu"
        assert body["total_vram_available_gb"] > 0
        assert body["loaded_models"][TASK]["simulated_gpu"] is True
        assert body["loaded_models"][TASK]["device"] == report["device"] == "cpu"


# --- item 8: colliding task names -------------------------------------------------------------


def test_a_task_whose_selection_name_is_taken_by_another_task_is_refused(
    kube: Kube, api: ApiServer
) -> None:
    # A catalog cannot hold two such tasks (import and the API refuse it), but a selection
    # left from another catalog can hold the name: `Obj-Det` and `obj_det` share `obj-det`.
    kube.apply_catalog(catalog({"Obj-Det": {"b": option(1.0)}}))
    kube.select("obj_det", "a")  # ModelSelection obj-det, of a task this catalog lacks
    assert eventually(lambda: "Obj-Det" in models(api), 20)
    answer = api.http.post(SELECT, params={"task_type": "Obj-Det", "model_name": "b"})
    assert answer.status_code == 409, answer.text
    assert "belongs to task 'obj_det', not 'Obj-Det'" in answer.json()["error"]
    spec = kube.selection("obj_det")["spec"]
    assert (spec["task"], spec["model"]) == ("obj_det", "a")  # untouched


def test_a_catalog_with_colliding_task_names_is_refused_by_name(kube: Kube, api: ApiServer) -> None:
    kube.apply_catalog(catalog({"obj_det": {"a": option(1.0)}, "Obj-Det": {"b": option(1.0)}}))
    config = eventually(
        lambda: r if "would share" in (r := api.http.get("/api/models/config")).text else None, 20
    )
    assert config is not None and config.status_code == 500
    assert (
        "tasks 'Obj-Det' and 'obj_det' would share the ModelSelection name 'obj-det'"
        in (config.json()["error"])
    )


# --- item 11: a catalog that does not parse ----------------------------------------------------


def test_a_missing_catalog_is_an_error_not_default_values(kube: Kube, api: ApiServer) -> None:
    # (A catalog that does not parse answers the same way: tests/api/test_validation.py.)
    config = api.http.get("/api/models/config")
    assert config.status_code == 500
    assert config.json() == {
        "error": f"ModelCatalog 'default' not found in namespace '{kube.namespace}'"
    }
    validate = api.http.post("/api/models/validate")
    assert (validate.status_code, validate.json()) == (500, config.json())
    select = api.http.post(SELECT, params={"task_type": TASK, "model_name": "a"})
    assert (select.status_code, select.json()) == (500, config.json())
    assert api.http.get("/api/models/status").status_code == 200  # the pods' reports stand
    kube.apply_catalog(catalog({TASK: {"a": option(1.0)}}))
    assert eventually(lambda: api.http.get("/api/models/config").status_code == 200, 20)


# --- item 9: a failed cache rebuild -------------------------------------------------------------


def test_a_failing_cache_rebuild_is_not_ready_and_loses_no_event(
    kube: Kube, api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.apply_catalog(catalog({TASK: {"a": option(1.0), "b": option(1.0)}}))
    kube.select(TASK, "a")
    assert eventually(lambda: (models(api).get(TASK) or {}).get("selected") == "a", 20)

    lines: list[str] = []
    stream = threading.Thread(target=_read_events, args=(api.url, lines), daemon=True)
    stream.start()
    assert eventually(lambda: "event: status" in lines, 10)

    real_status_body = responses.status_body
    broken = threading.Event()

    def status_body(*args: Any) -> Any:
        if broken.is_set():
            raise RuntimeError("a bug in a response builder")
        return real_status_body(*args)

    monkeypatch.setattr(responses, "status_body", status_body)
    broken.set()
    kube.select(TASK, "b")  # a change the cache cannot turn into a snapshot
    ready = eventually(lambda: r if (r := api.http.get("/readyz")).status_code == 503 else None, 20)
    assert ready is not None
    assert "rebuild failed: RuntimeError: a bug in a response builder" in ready.json()["error"]
    # Reads answer from the last view that built, marked stale (FOVEA_API_STALE_READ_SECONDS),
    # never from the change it could not build.
    stale = api.http.get("/api/models/config")
    assert stale.status_code == 200 and "x-fovea-stale-seconds" in stale.headers
    assert stale.json()["models"][TASK]["selected"] == "a"
    assert eventually(lambda: any('"synced":false' in line for line in lines), 10)

    broken.clear()  # the bug goes away: the retry publishes the change it held back
    assert eventually(lambda: api.http.get("/readyz").status_code == 200, 20)
    config = api.http.get("/api/models/config").json()
    assert config["models"][TASK]["selected"] == "b"
    assert eventually(lambda: any('"model":"b"' in line for line in lines), 10), lines


def _read_events(url: str, lines: list[str]) -> None:
    try:
        with httpx.stream("GET", f"{url}/api/models/events", timeout=120) as stream:
            for line in stream.iter_lines():
                lines.append(line)
    except httpx.HTTPError:
        return


# --- item 6: two namespaces competing for the same GPUs ----------------------------------------


@pytest.fixture
def second_namespace(kubeconfig: str, namespace: str) -> Iterator[str]:
    name = f"{namespace[:50]}-b{uuid.uuid4().hex[:4]}"
    core = client.CoreV1Api(api_client(kubeconfig))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    assert eventually(lambda: _has_default_account(core, name), 30)
    yield name
    core.delete_namespace(name)


def _has_default_account(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except client.exceptions.ApiException:
        return False
    return True


@pytest.fixture
def operator_of_both(
    kubeconfig: str, namespace: str, second_namespace: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """One operator planning both namespaces together (its Lease in the first)."""
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "FOVEA_OPERATOR_LEASE_NAMESPACE": namespace,
        "FOVEA_OPERATOR_LEASE_SECONDS": "6",
        "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
    }
    args = ["operator", "-n", namespace, "-n", second_namespace]
    with open(tmp_path / "operator.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", *args], env=env, stdout=log, stderr=log
        )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_validate_agrees_with_the_operator_when_another_namespace_takes_the_gpu(
    kube: Kube,
    second_namespace: str,
    operator_of_both: subprocess.Popen[bytes],
    api_factory: Callable[..., ApiServer],
) -> None:
    # 60 GiB fits only the 80 GiB GPU (64 GiB below the 80% threshold): one of them can have it.
    big = catalog({"summary": {"big": option(60.0)}})
    low = kube
    high = Kube(kube.api, kube.kubeconfig, second_namespace)
    low.apply_catalog(big)
    high.apply_catalog(big)
    low_api = api_factory()
    high_api = api_factory(namespace=second_namespace)
    low_api.wait_ready()
    high_api.wait_ready()

    low.select("summary", "big", priority=100)
    placed = eventually(lambda: s if (s := low.status("summary")).get("node") else None, 60)
    assert placed is not None, low.status("summary")
    assert eventually(lambda: low_api.http.post("/api/models/validate").json()["valid"], 30)

    high.select("summary", "big", priority=900)  # the other namespace takes the GPU
    evicted = eventually(
        lambda: s if (s := low.status("summary")).get("phase") == "Evicted" else None, 60
    )
    assert evicted is not None, low.status("summary")
    gpu = eventually(lambda: high.status("summary").get("node"), 60)
    assert gpu is not None

    def decided(api: ApiServer) -> dict[str, Any] | None:
        body: dict[str, Any] = api.http.post("/api/models/validate").json()
        view = body["placements"].get("summary") or {}
        return body if view.get("decided_by") == "operator" else None

    holder = f"{gpu} GPU 0 (80.0 GB) holds {second_namespace}/summary (60.0 GB)"

    def invalid_naming_the_holder() -> dict[str, Any] | None:
        body = decided(low_api)
        # The two statuses reach the cache one after the other: wait for both.
        return body if body and not body["valid"] and holder in str(body["warnings"]) else None

    low_body = eventually(invalid_naming_the_holder, 30)
    assert low_body is not None, low_api.http.post("/api/models/validate").text
    warning = next(w for w in low_body["warnings"] if w.startswith("summary:"))
    assert "big (60.0 GB) is evicted (the operator's decision)" in warning
    assert holder in warning
    assert low_body["scope"] == "cluster"

    high_body = eventually(lambda: b if (b := decided(high_api)) and b["valid"] else None, 30)
    assert high_body is not None, high_api.http.post("/api/models/validate").json()
    assert high_body["placements"]["summary"]["node"] == gpu

    # /status says which GPUs its totals cover, and who holds them.
    status = low_api.http.get("/api/models/status").json()
    covered = {(g["node"], g["index"]) for g in status["gpus"]}
    assert (gpu, 0) in covered
    holders = next(g for g in status["gpus"] if (g["node"], g["index"]) == (gpu, 0))["held_by"]
    assert [h["selection"] for h in holders] == [f"{second_namespace}/summary"]
