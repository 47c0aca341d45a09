"""The shipped system running in the cluster: operator and API as pods, select -> Ready.

The `local` overlay (on kind: the `kind` overlay) is installed into the
test's namespace. The Deployments' pods are created by the controller-manager,
bound by the scheduler and, on the local cluster, run by the node agent as
local processes with their service accounts' tokens: the RBAC in effect is the
shipped one. The operator is confined to the namespace (so that it leaves
other tests alone); everything else is the overlay as shipped.

A select through the in-cluster API must then end with the model loaded in a
model-server pod that the in-cluster operator created.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from kube_testing import eventually
from kustomize_testing import (
    MANIFESTS,
    delete_cluster_rbac,
    kubectl,
    render_text,
    without_namespace_object,
    write_wrapper,
)

pytestmark = pytest.mark.integration

DEPLOYMENTS = ("fovea-models-operator", "fovea-models-api")
EXAMPLES = MANIFESTS.parent / "examples" / "js"
START_S = 180.0  # Deployments Ready: a cold start on a busy two-core machine
LOAD_S = 300  # a select's ?wait=: the model pod imports torch before it loads
TASK, MODEL, MODEL_ID = "object_tracking", "mlp-tracker", "mlp-tiny"  # the demo's smallest

# Test-only: the operator watches the test's namespace, not the whole cluster.
CONFINE_OPERATOR = {
    "target": {"kind": "Deployment", "name": "fovea-models-operator"},
    "patch": yaml.safe_dump(
        [
            {
                "op": "add",
                "path": "/spec/template/spec/containers/0/command/-",
                "value": "--namespace=$(POD_NAMESPACE)",
            }
        ]
    ),
}


@dataclass
class Install:
    namespace: str
    kubeconfig: str
    objects: list[dict[str, Any]]
    local: bool

    def get(self, *args: str) -> dict[str, Any]:
        out = kubectl(["get", "-n", self.namespace, "-o", "json", *args], self.kubeconfig)
        obj: dict[str, Any] = yaml.safe_load(out.stdout)
        return obj

    def pods(self, component: str) -> list[dict[str, Any]]:
        items = self.get("pods", "-l", f"{c.LABEL_COMPONENT}={component}")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]


@pytest.fixture
def installed(kubeconfig: str, namespace: str, crds: None, tmp_path: Path) -> Iterator[Install]:
    local = not os.environ.get(c.ENV_TEST_KUBECONFIG)
    overlay = MANIFESTS / "overlays" / ("local" if local else "kind")
    wrapper = write_wrapper(tmp_path / "install", overlay, namespace, [CONFINE_OPERATOR])
    text = without_namespace_object(render_text(wrapper))
    objects = [o for o in yaml.safe_load_all(text) if o]
    # The install namespace's Pod Security level: every pod must pass "restricted".
    restricted = "pod-security.kubernetes.io/enforce=restricted"
    kubectl(["label", "--overwrite", "namespace", namespace, restricted], kubeconfig)
    try:
        kubectl(["apply", "--server-side", "-f", "-"], kubeconfig, text)
        yield Install(namespace, kubeconfig, objects, local)
    finally:
        # The namespace fixture deletes the rest (pods first: their processes end).
        delete_cluster_rbac(objects, kubeconfig)


def deployments_ready(install: Install) -> bool:
    for name in DEPLOYMENTS:
        status = install.get("deployment", name).get("status") or {}
        if status.get("readyReplicas", 0) < 1 or status.get("unavailableReplicas"):
            return False
    return True


@contextmanager
def api_url(install: Install) -> Iterator[str]:
    """Where the in-cluster API answers, from this test process."""
    pod = install.pods("api")[0]
    port = pod["metadata"].get("annotations", {}).get(c.ANNOTATION_LOCAL_PORT)
    if port:  # the local cluster: every pod is a process at its own address, on $PORT
        yield f"http://{pod['status']['podIP']}:{port}"
        return
    proc = subprocess.Popen(
        [
            "kubectl",
            "port-forward",
            "-n",
            install.namespace,
            f"pod/{pod['metadata']['name']}",
            ":3001",
        ],
        env={**os.environ, "KUBECONFIG": install.kubeconfig},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 3001"
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, f"kubectl port-forward said: {line!r}"
        yield f"http://127.0.0.1:{found[1]}"
    finally:
        proc.terminate()
        proc.wait(10)


def api_token(install: Install) -> str:
    """The bearer token the API requires: the Secret the overlay made, filled by the cluster."""
    secret = install.get("secret", "fovea-models-api-token")
    return base64.b64decode(secret.get("data", {}).get("token", "")).decode()


def contract_example(script: str, url: str) -> list[str]:
    """What one of the contract's JavaScript examples prints (examples/js, run by node)."""
    binary = shutil.which("node")
    assert binary, "node is not installed"
    result = subprocess.run(
        [binary, str(EXAMPLES / script)],
        env={**os.environ, "FOVEA_API_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def operator_logs(install: Install, request: pytest.FixtureRequest) -> str:
    """The in-cluster operator's output (the local cluster keeps every pod's log)."""
    cluster = request.getfixturevalue("local_cluster")
    logs = sorted(cluster.state.pod_logs.glob(f"{install.namespace}_fovea-models-operator-*.log"))
    assert logs, "the operator pod left no log"
    return "".join(path.read_text(errors="replace") for path in logs)


def test_the_overlay_runs_in_cluster_and_a_select_loads_the_model(
    installed: Install, request: pytest.FixtureRequest
) -> None:
    ready = eventually(lambda: deployments_ready(installed), timeout=START_S)
    listing = kubectl(["get", "pods", "-n", installed.namespace], installed.kubeconfig).stdout
    assert ready, f"the Deployments' pods are not Ready:\n{listing}"
    # The operator runs as a leader and a hot standby; the local overlay's API as one pod.
    expected = (("operator", "fovea-models-operator", 2), ("api", "fovea-models-api", 1))
    for component, account, replicas in expected:
        pods = installed.pods(component)
        assert len(pods) == replicas, (component, listing)
        assert all(p["spec"]["serviceAccountName"] == account for p in pods)

    token = api_token(installed)
    assert token, "the cluster did not fill the API token Secret"
    auth = {"Authorization": f"Bearer {token}"}
    with api_url(installed) as url, httpx.Client(base_url=url, timeout=LOAD_S + 30) as http:
        assert eventually(lambda: http.get("/readyz").status_code == 200, timeout=60)
        # Writes take the overlay's token, and nothing else.
        anonymous = http.post("/api/models/select", params={"task_type": TASK, "model_name": MODEL})
        assert anonymous.status_code == 401, anonymous.text
        wrong = http.post(
            "/api/models/select",
            params={"task_type": TASK, "model_name": MODEL},
            headers={"Authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401, wrong.text
        config = http.get("/api/models/config").json()
        assert MODEL in config["models"][TASK]["options"]
        assert config["models"][TASK]["selected"] is None  # the overlay selects nothing

        answer = http.post(
            "/api/models/select",
            params={"task_type": TASK, "model_name": MODEL, "wait": LOAD_S},
            headers=auth,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["selected_model"] == MODEL

        loaded = http.get("/api/models/status").json()["loaded_models"]
        assert loaded[TASK]["model_id"] == MODEL_ID

        unknown = http.post(
            "/api/models/select", params={"task_type": TASK, "model_name": "nope"}, headers=auth
        )
        assert unknown.status_code == 404 and "nope" in unknown.json()["error"]

        # The contract's own usage examples, unchanged, against the in-cluster API.
        assert contract_example("check-available-models.mjs", url) == [
            f"{name}: {option['description']} ({option['vram_mb']:g} MB)"
            for name, option in config["models"]["object_detection"]["options"].items()
        ] + ["Current detection model: null"]
        memory = contract_example("monitor-memory.mjs", url)
        assert memory[0].startswith("VRAM Usage: ")
        assert memory[1:] == [f"{TASK}: {MODEL_ID} (0.0 GB)"]  # a tiny MLP

    # The model pod: created by the in-cluster operator, with the model pods'
    # identity, and its report made it into the selection (status.runtime).
    model_pods = installed.pods(c.COMPONENT_MODEL_POD)
    assert [p["spec"]["serviceAccountName"] for p in model_pods] == ["fovea-model-pod"]
    status = installed.get(f"{c.SELECTION_PLURAL}.{c.GROUP}", selection_name(TASK))["status"]
    assert status["phase"] == "Ready"
    assert status["runtime"]["state"] == "Ready"
    assert status["pod"] == model_pods[0]["metadata"]["name"]
    if installed.local:
        assert loaded[TASK]["simulated_gpu"] is True  # nothing pretends: a simulated GPU says so
        log = operator_logs(installed, request)
        # kopf says "Not enough permissions" where RBAC refuses it something.
        assert not re.search(r"[Ff]orbidden|\b403\b|Not enough permissions", log), log[-3000:]
