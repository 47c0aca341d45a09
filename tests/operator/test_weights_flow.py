"""Weights on the real local cluster with the real operator: fetched by the pod's
fetch-weights init container from an HTTP server on loopback, cached on the node,
loaded from the cache; fetched once; and every bad input Failed with its reason."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.kube import api_client
from kube_testing import Kube, eventually, tiny_catalog, tiny_option
from kustomize_testing import MANIFESTS, delete_cluster_rbac, kubectl, render, write_wrapper

pytestmark = pytest.mark.integration

TASK = "det"
WAIT_S = 180


@pytest.fixture
def weights_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP file server on loopback serving `tmp_path/served`: (base URL, folder)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(_QuietHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def mlp_tiny_safetensors(path: Path) -> str:
    """The weights of the `mlp-tiny` architecture as a safetensors file; its sha256."""
    import torch
    from safetensors.torch import save_file

    from fovea.model_pod.adapters.adapter_torch import ARCHITECTURES

    module = ARCHITECTURES["mlp-tiny"].build()
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_weights(url: str, sha256: str | None = None) -> dict[str, Any]:
    """The tiny MLP, its weights from `url` (not built with random weights)."""
    option = tiny_option(0.5, weights=url, allowRandomWeights=False)
    if sha256 is not None:
        option["weightsSha256"] = sha256
    return option


def ready(kube: Kube, task: str = TASK) -> dict[str, Any] | None:
    status = kube.status(task)
    return status if status.get("phase") in ("Ready", "CPUFallback") else None


def test_fetched_once_into_the_node_cache_and_loaded_from_it(
    kube: Kube, operator: None, weights_server: tuple[str, Path]
) -> None:
    base, served = weights_server
    digest = mlp_tiny_safetensors(served / "mlp.safetensors")
    size = (served / "mlp.safetensors").stat().st_size
    kube.apply_catalog(tiny_catalog({TASK: {"m": with_weights(f"{base}/mlp.safetensors", digest)}}))
    kube.select(TASK, "m")

    status = eventually(lambda: ready(kube), WAIT_S)
    assert status is not None, kube.status(TASK)
    first = status["weights"]
    assert first["phase"] == "Cached", first
    assert (first["sha256"], first["bytesDone"], first["fetchedBytes"]) == (digest, size, size)
    runtime = status["runtime"]
    assert runtime["pod"] == status["pod"] and not runtime.get("randomWeights"), runtime
    pod = kube.pod(status["pod"])
    assert pod is not None
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["name"] == "fetch-weights" and init["state"]["terminated"]["exitCode"] == 0
    node = status["node"]

    # Caches are per node: a start on a node that fetched before downloads nothing, a
    # start on another node (the planner may pick it) downloads the whole file once.
    cached_on = {node}
    restarts: list[tuple[str, int]] = []
    while len(restarts) < 4 and (not restarts or restarts[-1][1] != 0):
        kube.select(TASK, None)
        assert eventually(lambda: not kube.model_pods() or None, WAIT_S)
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kube.select(TASK, "m")

        def ready_again(since: str = since) -> dict[str, Any] | None:
            status = ready(kube)
            fresh = status and (status.get("weights") or {}).get("updatedAt", "") >= since
            return status if fresh else None

        again = eventually(ready_again, WAIT_S)
        assert again is not None, kube.status(TASK)
        assert again["weights"]["phase"] == "Cached"
        fetched = again["weights"]["fetchedBytes"]
        assert fetched == (0 if again["node"] in cached_on else size), (again["node"], restarts)
        cached_on.add(again["node"])
        restarts.append((again["node"], fetched))
    # Two GPU nodes: by the third start at the latest, one lands where the file is cached.
    assert restarts[-1][1] == 0, restarts


def test_bad_sources_fail_with_the_reason_and_the_serving_model_stays(
    kube: Kube, operator: None, weights_server: tuple[str, Path]
) -> None:
    base, served = weights_server
    mlp_tiny_safetensors(served / "mlp.safetensors")
    kube.apply_catalog(
        tiny_catalog(
            {
                TASK: {
                    "plain": tiny_option(0.5),
                    "missing": with_weights(f"{base}/nowhere.safetensors"),
                    "tampered": with_weights(f"{base}/mlp.safetensors", "0" * 64),
                }
            }
        )
    )
    kube.select(TASK, "plain")
    serving = eventually(lambda: ready(kube), WAIT_S)
    assert serving is not None, kube.status(TASK)
    old_pod = serving["pod"]

    for model, said in (("missing", "404"), ("tampered", "sha256")):
        kube.select(TASK, model)

        def failed(model: str = model, said: str = said) -> dict[str, Any] | None:
            """Failed with the fetcher's reason. The operator can see the init container's
            exit before the fetcher's own report (the reason) and then says `fetch-weights
            exited with code 1: Error` until its next pass reads the report (seen under load)."""
            status = kube.status(TASK)
            right = status.get("model") == model and status.get("phase") == "Failed"
            fetch = status.get("weights") or {}
            said_it = fetch.get("phase") == "Failed" and said in fetch.get("message", "")
            return status if right and said_it else None

        status = eventually(failed, WAIT_S)
        assert status is not None, kube.status(TASK)
        ready_cond = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready_cond["reason"] == "WeightsFailed" and said in ready_cond["message"]
        # The model that was serving goes on serving (make-before-break keeps its pod).
        pod = kube.pod(old_pod)
        assert pod is not None and not pod["metadata"].get("deletionTimestamp")
        assert any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"]
        )
    assert any(e["reason"] == "WeightsFailed" for e in kube.events(TASK))


def test_a_missing_credentials_secret_fails_with_its_name(
    kube: Kube, operator: None, weights_server: tuple[str, Path]
) -> None:
    base, served = weights_server
    mlp_tiny_safetensors(served / "mlp.safetensors")
    spec = tiny_catalog({TASK: {"m": with_weights(f"{base}/mlp.safetensors")}})
    spec["weightsCredentials"] = {"secret": "hub-token"}
    kube.apply_catalog(spec)
    kube.select(TASK, "m")

    def failed() -> dict[str, Any] | None:
        # (Another CreateContainerConfigError may come first, say the API server slow to
        # answer the node under load: shown too; the Secret's is the one that stays.)
        status = kube.status(TASK)
        said = (status.get("weights") or {}).get("message") or ""
        return status if said.startswith("Secret hub-token not found") else None

    status = eventually(failed, WAIT_S)
    assert status is not None, kube.status(TASK)
    assert status["phase"] == "Failed"
    assert status["weights"]["message"].startswith("Secret hub-token not found"), status
    ready_cond = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready_cond["reason"] == "WeightsFailed"

    # The Secret arrives: the kubelet starts the fetch, and the model gets Ready.
    kube.core.create_namespaced_secret(
        kube.namespace, {"metadata": {"name": "hub-token"}, "stringData": {"HF_TOKEN": "x"}}
    )
    done = eventually(lambda: ready(kube), WAIT_S)
    assert done is not None, kube.status(TASK)
    assert done["weights"]["phase"] == "Cached"


def _claim(kube: Kube, name: str) -> Path:
    """A ReadWriteMany PVC of the local cluster's default class, bound: its host directory."""
    body = {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    kube.core.create_namespaced_persistent_volume_claim(kube.namespace, body)

    def bound() -> str | None:
        claim = kube.core.read_namespaced_persistent_volume_claim(name, kube.namespace)
        return claim.spec.volume_name if claim.status.phase == "Bound" else None

    volume = eventually(bound, 60)
    assert volume, f"PVC {name} was not bound"
    pv = kube.core.read_persistent_volume(volume)
    return Path(pv.spec.host_path.path)


def test_a_shared_cache_fetches_a_pvc_source_once_for_two_selections(
    kube: Kube, operator: None
) -> None:
    store = _claim(kube, "model-store")
    (store / "mlp").mkdir(parents=True, exist_ok=True)
    digest = mlp_tiny_safetensors(store / "mlp" / "mlp.safetensors")
    _claim(kube, "weights-rwx")
    spec = tiny_catalog(
        {
            "a": {"m": tiny_option(0.5, weights="pvc://model-store/mlp/mlp.safetensors")},
            "b": {"m": tiny_option(0.5, weights="pvc://model-store/mlp/mlp.safetensors")},
        }
    )
    for task in ("a", "b"):
        spec["tasks"][task]["options"]["m"]["allowRandomWeights"] = False
    spec["weightsCache"] = {"kind": "shared", "claim": "weights-rwx", "sizeGb": 1}
    kube.apply_catalog(spec)

    kube.select("a", "m")
    first = eventually(lambda: ready(kube, "a"), WAIT_S)
    assert first is not None, kube.status("a")
    assert first["weights"]["phase"] == "Cached" and first["weights"]["sha256"] == digest
    assert first["weights"]["fetchedBytes"] > 0

    kube.select("b", "m")  # wherever it runs, the shared cache has the weights already
    second = eventually(lambda: ready(kube, "b"), WAIT_S)
    assert second is not None, kube.status("b")
    assert second["weights"]["phase"] == "Cached"
    assert second["weights"]["fetchedBytes"] == 0, second["weights"]
    assert not second["runtime"].get("randomWeights"), second["runtime"]


@pytest.fixture
def shipped_rbac(kube: Kube, tmp_path: Path) -> Iterator[None]:
    """The shipped RBAC and the model pods' admission policy, in force in the namespace."""
    wrapper = write_wrapper(tmp_path / "rbac", MANIFESTS / "rbac", kube.namespace)
    objects = render(wrapper)
    try:
        kubectl(["apply", "--server-side", "-k", str(wrapper)], kube.kubeconfig)
        # The API server loads a new policy a moment after it is stored: wait until it
        # refuses a write of the model pods' account that no pod's token makes.
        kube.select("policy-probe", None)
        as_account = api_client(kube.kubeconfig)
        account = f"system:serviceaccount:{kube.namespace}:fovea-model-pod"
        as_account.set_default_header("Impersonate-User", account)
        custom = client.CustomObjectsApi(as_account)
        said: list[str] = []

        def refused() -> bool:
            try:
                custom.patch_namespaced_custom_object_status(
                    "fovea.dev",
                    "v1alpha1",
                    kube.namespace,
                    "modelselections",
                    "policy-probe",
                    {"status": {"runtime": {"pod": "x"}}},
                )
            except ApiException as exc:
                said.append(str(exc.body))
                return "fovea-model-pod-own-runtime" in str(exc.body)  # the policy refused
            said.append("accepted")
            return False

        assert eventually(refused, 30), f"the admission policy is not in force: {said[-1:]}"
        kube.delete_selection("policy-probe")
        yield
    finally:
        delete_cluster_rbac(objects, kube.kubeconfig)


def test_a_switch_to_weights_reports_through_the_admission_policy(
    kube: Kube, shipped_rbac: None, operator: None, weights_server: tuple[str, Path]
) -> None:
    base, served = weights_server
    digest = mlp_tiny_safetensors(served / "mlp.safetensors")
    weighted = tiny_option(0.5, weights=f"{base}/mlp.safetensors", allowRandomWeights=False)
    kube.apply_catalog(tiny_catalog({TASK: {"plain": tiny_option(0.5), "w": weighted}}))
    kube.select(TASK, "plain")
    serving = eventually(lambda: ready(kube), WAIT_S)
    assert serving is not None, kube.status(TASK)
    assert serving["runtime"]["pod"] == serving["pod"]  # the old pod's report names it

    kube.select(TASK, "w")

    def switched() -> dict[str, Any] | None:
        status = ready(kube)
        return status if status and status.get("model") == "w" else None

    status = eventually(switched, WAIT_S)
    assert status is not None, kube.status(TASK)
    # Only the fetch's own report carries the sha256 it verified and the bytes it fetched.
    assert status["weights"]["sha256"] == digest, status["weights"]
    assert status["weights"]["fetchedBytes"] > 0
    assert status["runtime"]["pod"] == status["pod"] != serving["pod"]
