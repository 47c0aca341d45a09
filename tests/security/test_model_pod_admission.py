"""A model pod writes only its own selection's status.runtime (the shipped admission policy).

Two real pods run with the model pods' service account, each with its
token bound to it by the node agent (TokenRequest, boundObjectRef Pod), so
the API server sees each pod's name. The shipped RBAC and admission policy
(manifests/rbac) are installed into the test's namespace; each pod then tries
what a compromised model pod would, and prints the API server's answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from fovea.kube import api_client
from kube_testing import Kube, eventually
from kustomize_testing import MANIFESTS, delete_cluster_rbac, kubectl, render, write_wrapper

pytestmark = pytest.mark.integration

ACCOUNT = "fovea-model-pod"
TASKS = {"pod-a": "object_detection", "pod-b": "object_tracking"}
OWN = "may write only the status of its own ModelSelection"
RUNTIME_ONLY = "a model pod writes status.runtime only"
NOT_ME = "status.runtime.pod must name the pod that writes it"
UNBOUND = "a service-account token bound to its pod"
PODS_DONE_S = 120.0
PROBE_TASK = "policy_probe"

# What each pod runs: the patches it is given, each answered by the API server.
SCRIPT = """
import json, os
from kubernetes import client, config
config.load_kube_config()
api = client.CustomObjectsApi()
answers = {}
for label, name, body in json.loads(os.environ["ATTEMPTS"]):
    try:
        api.patch_namespaced_custom_object_status(
            "fovea.dev", "v1alpha1", os.environ["NS"], "modelselections", name, body)
        answers[label] = [200, ""]
    except client.ApiException as exc:
        answers[label] = [exc.status, json.loads(exc.body or "{}").get("message", "")]
print("ANSWERS " + json.dumps(answers), flush=True)
"""


def attempts(me: str, other: str) -> list[tuple[str, str, dict[str, Any]]]:
    mine, theirs = selection_name(TASKS[me]), selection_name(TASKS[other])
    report = {"pod": me, "state": "Ready", "lastUsed": "2026-01-01T00:00:00Z"}
    return [
        ("own runtime", mine, {"status": {"runtime": report}}),
        ("other's runtime", theirs, {"status": {"runtime": {**report, "pod": other}}}),
        ("own phase", mine, {"status": {"phase": "Failed"}}),
        ("own lastUsed", mine, {"status": {"lastUsed": "2030-01-01T00:00:00Z"}}),
        ("own runtime as another pod", mine, {"status": {"runtime": {"pod": other}}}),
    ]


def pod_body(me: str, other: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": me},
        "spec": {
            "serviceAccountName": ACCOUNT,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "probe",
                    "image": "ghcr.io/fovea-models/model-pod",
                    "command": ["python", "-c", SCRIPT],
                    "env": [
                        {"name": "NS", "value": namespace},
                        {"name": "ATTEMPTS", "value": json.dumps(attempts(me, other))},
                    ],
                }
            ],
        },
    }


@pytest.fixture
def shipped_rbac(kube: Kube, tmp_path: Path) -> Iterator[None]:
    """The shipped RBAC and admission policy, in force in the test's namespace."""
    wrapper = write_wrapper(tmp_path / "rbac", MANIFESTS / "rbac", kube.namespace)
    objects = render(wrapper)
    try:
        kubectl(["apply", "--server-side", "-k", str(wrapper)], kube.kubeconfig)
        # The API server loads a new policy a moment after it is stored.
        kube.select(PROBE_TASK, "m")
        kube.patch_status(PROBE_TASK, {"pod": "pod-a"})
        assert eventually(lambda: unbound_write(kube, tmp_path, PROBE_TASK) is not None, 30)
        yield
    finally:
        delete_cluster_rbac(objects, kube.kubeconfig)


def unbound_write(kube: Kube, tmp_path: Path, task: str) -> ApiException | None:
    """The refusal of a runtime write with a token of the model pods' account bound to no pod."""
    token = kube.kubectl(["create", "token", "-n", kube.namespace, ACCOUNT]).stdout.strip()
    as_account = token_kubeconfig(kube.kubeconfig, token, tmp_path / "token-kubeconfig")
    custom = client.CustomObjectsApi(api_client(as_account))
    body = {"status": {"runtime": {"pod": "pod-a", "state": "Ready"}}}
    try:
        custom.patch_namespaced_custom_object_status(
            c.GROUP, c.VERSION, kube.namespace, c.SELECTION_PLURAL, selection_name(task), body
        )
    except ApiException as exc:
        return exc
    return None


def answers(kube: Kube, pod: str) -> dict[str, list[Any]]:
    def finished() -> bool:
        found = kube.pod(pod)
        return bool(found and found["status"].get("phase") in ("Succeeded", "Failed"))

    assert eventually(finished, timeout=PODS_DONE_S), (kube.pod(pod) or {}).get("status")
    log = kube.kubectl(["logs", "-n", kube.namespace, pod]).stdout
    lines = [line for line in log.splitlines() if line.startswith("ANSWERS ")]
    assert lines, log[-3000:]
    found: dict[str, list[Any]] = json.loads(lines[-1].removeprefix("ANSWERS "))
    return found


def test_each_model_pod_writes_only_its_own_selections_runtime(
    kube: Kube, shipped_rbac: None
) -> None:
    for pod, task in TASKS.items():
        kube.select(task, "m")
        kube.patch_status(task, {"phase": "Loading", "pod": pod})  # as the operator would
    (a, b) = TASKS
    for me, other in ((a, b), (b, a)):
        kube.core.create_namespaced_pod(kube.namespace, pod_body(me, other, kube.namespace))

    for me in TASKS:
        got = answers(kube, me)
        assert got["own runtime"] == [200, ""], got
        for label, words in (
            ("other's runtime", OWN),
            ("own phase", RUNTIME_ONLY),
            ("own lastUsed", RUNTIME_ONLY),
            ("own runtime as another pod", NOT_ME),
        ):
            status, message = got[label]
            assert status == 403 and words in message, (me, label, got[label])

    for me, task in TASKS.items():
        status = kube.status(task)
        assert status["runtime"]["pod"] == me and status["phase"] == "Loading"
        assert "lastUsed" not in status  # the operator's field, untouched


def token_kubeconfig(kubeconfig: str, token: str, path: Path) -> str:
    """The cluster of `kubeconfig`, as a user with only `token` (no client certificate)."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    current = next(x for x in config["contexts"] if x["name"] == config["current-context"])
    cluster = next(x for x in config["clusters"] if x["name"] == current["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "token", "user": {"token": token}}],
                "contexts": [
                    {"name": "token", "context": {"cluster": cluster["name"], "user": "token"}}
                ],
                "current-context": "token",
            }
        )
    )
    return str(path)


def test_a_token_not_bound_to_a_pod_writes_nothing(
    kube: Kube, shipped_rbac: None, tmp_path: Path
) -> None:
    kube.select("object_detection", "m")
    kube.patch_status("object_detection", {"pod": "pod-a"})
    refused = unbound_write(kube, tmp_path, "object_detection")
    assert refused is not None and refused.status == 403 and UNBOUND in refused.body
    assert "runtime" not in kube.status("object_detection")
