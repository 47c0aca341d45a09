"""The container node: a real kubelet and containerd beside the process nodes.

The session's local cluster gets a container node (localcluster/containernode.py);
the control-plane image that `make images` built (scripts/build-images.sh,
before pytest in `make test`) is imported into its containerd. Pods meant for
it run there as containers, with the memory limits the kubelet enforces
through cgroups; the `container-node` overlay runs the operator and the API
there, and a select through that API ends with a model the containerized
operator loaded.
"""

from __future__ import annotations

import base64
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s

import http_model
from api_server import ApiServer
from fovea.api.settings import Settings
from fovea.domain import constants as c
from fovea.domain.endpoints import build_service
from fovea.localcluster.containernode import ContainerNode
from fovea.localcluster.containernode_config import (
    NODE_KIND,
    NODE_KIND_LABEL,
    PAUSE_IMAGE,
    TAINT_KEY,
)
from kube_testing import Kube, eventually, tiny_catalog, tiny_option
from kustomize_testing import (
    MANIFESTS,
    delete_cluster_rbac,
    kubectl,
    render_text,
    without_namespace_object,
    write_wrapper,
)

if TYPE_CHECKING:
    from fovea.localcluster.cluster import LocalCluster

# One container node per machine (its bridge, subnet and cgroups): its tests share the
# module's node and run on one xdist worker, one after another (`--dist loadfile`).
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
CONTROL_PLANE_IMAGE = f"ghcr.io/fovea-models/control-plane:{VERSION}"
START_S = 180.0
LOAD_S = 300
TASK, MODEL = "object_tracking", "mlp-tracker"  # the demo catalog's smallest
ON_CONTAINER_NODE = {
    "nodeSelector": {NODE_KIND_LABEL: NODE_KIND},
    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}


@pytest.fixture(scope="module")
def container_node(local_cluster: LocalCluster) -> Iterator[ContainerNode]:
    images = subprocess.run(
        ["docker", "image", "inspect", CONTROL_PLANE_IMAGE], capture_output=True, check=False
    )
    if images.returncode != 0:
        pytest.fail(f"no {CONTROL_PLANE_IMAGE} in Docker: run `make images`", pytrace=False)
    node = ContainerNode(local_cluster.state, local_cluster.server, log=lambda message: None)
    node.start()
    try:
        node.import_from_docker(CONTROL_PLANE_IMAGE)
        yield node
    finally:
        node.stop()


def get(kubeconfig: str, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(kubectl(["get", "-o", "json", *args], kubeconfig).stdout)
    return obj


def run_pod(kubeconfig: str, namespace: str, name: str, container: dict[str, Any]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"restartPolicy": "Never", "containers": [container], **ON_CONTAINER_NODE},
    }
    kubectl(["apply", "-f", "-"], kubeconfig, yaml.safe_dump(pod))


def test_the_container_node_registers_beside_the_process_nodes(
    container_node: ContainerNode, kubeconfig: str
) -> None:
    nodes = {n["metadata"]["name"]: n for n in get(kubeconfig, "nodes")["items"]}
    node = nodes[container_node.name]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["metadata"]["labels"][NODE_KIND_LABEL] == NODE_KIND
    assert {"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    process_nodes = [n for n in nodes if n != container_node.name]
    assert process_nodes, "the node agent's nodes are gone"
    assert PAUSE_IMAGE in container_node.images()
    assert CONTROL_PLANE_IMAGE in container_node.images()


def test_a_pod_runs_as_a_container_and_its_memory_limit_is_enforced(
    container_node: ContainerNode, kubeconfig: str, namespace: str
) -> None:
    # Within its limit: runs to completion, as the image's non-root user.
    run_pod(
        kubeconfig,
        namespace,
        "fits",
        {
            "name": "main",
            "image": CONTROL_PLANE_IMAGE,
            "imagePullPolicy": "Never",
            "command": ["python", "-c", "import os; print('uid', os.getuid())"],
            "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}},
        },
    )
    # Over its limit: the kernel kills it inside the pod's memory cgroup.
    run_pod(
        kubeconfig,
        namespace,
        "hog",
        {
            "name": "main",
            "image": CONTROL_PLANE_IMAGE,
            "imagePullPolicy": "Never",
            "command": ["python", "-c", "b = bytearray(400 * 2**20); print(len(b))"],
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
        },
    )

    def finished(name: str) -> dict[str, Any] | None:
        pod = get(kubeconfig, "pod", "-n", namespace, name)
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    fits = eventually(lambda: finished("fits"), timeout=START_S)
    hog = eventually(lambda: finished("hog"), timeout=START_S)
    assert fits and hog, kubectl(["get", "pods", "-n", namespace, "-o", "wide"], kubeconfig).stdout
    assert fits["spec"]["nodeName"] == container_node.name
    assert fits["status"]["phase"] == "Succeeded"
    assert fits["status"]["podIP"].startswith("10.88.0.")
    log = kubectl(["logs", "-n", namespace, "fits"], kubeconfig).stdout
    assert log.strip() == "uid 10001"
    terminated = hog["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled", terminated


def test_the_planner_puts_a_cpu_model_pod_there_only_when_the_node_holds_its_image(
    container_node: ContainerNode, kube: Kube, operator: None
) -> None:
    """The node is tainted `fovea.dev/preloaded-images` and the kubelet lists what it holds
    (`status.images`); the operator (a process here) reads both.

    The model-pod image (2.3 GB with torch) is not built in `make test`, so the
    first task's option names the control-plane image, which the node holds: its
    pod lands there (and cannot load, the image has no torch: this test checks
    where the scheduler bound the pod and that the kubelet started it from the
    image; `make e2e-images` runs the model-pod image there to Ready). The second
    task's pod runs the operator's model-pod image, which the node lacks: it
    goes to a process node, though the container node has room and no GPU.
    """
    held = tiny_option(0.1, cpuMemoryGb=0.25, image=CONTROL_PLANE_IMAGE)
    kube.apply_catalog(
        tiny_catalog({"image_held": {"m": held}, "image_missing": {"m": tiny_option(0.1)}})
    )
    kube.select("image_held", "m", device_policy="cpu")
    kube.select("image_missing", "m", device_policy="cpu")

    def started() -> dict[str, dict[str, Any]] | None:
        pods = {p["metadata"]["labels"][c.LABEL_TASK]: p for p in kube.model_pods()}
        statuses = [(p["status"].get("containerStatuses") or [{}])[0] for p in pods.values()]
        done = len(pods) == 2 and all(s.get("containerID") for s in statuses)
        return pods if done else None

    pods = eventually(started, timeout=START_S)
    listing = kubectl(["get", "pods", "-n", kube.namespace, "-o", "wide"], kube.kubeconfig).stdout
    assert pods, f"the model pods did not start:\n{listing}"
    on_node = pods["image_held"]
    assert on_node["spec"]["nodeName"] == container_node.name, listing
    assert on_node["spec"]["containers"][0]["image"] == CONTROL_PLANE_IMAGE
    running = on_node["status"]["containerStatuses"][0]
    assert running["containerID"].startswith("containerd://"), running
    assert kube.status("image_held").get("node") == container_node.name
    elsewhere = pods["image_missing"]
    assert elsewhere["spec"]["nodeName"] not in (None, container_node.name), listing
    assert elsewhere["status"]["containerStatuses"][0]["containerID"].startswith("local://")


# Test-only, as in tests/manifests/test_in_cluster.py: the operator watches the
# test's namespace, not the whole cluster.
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


def test_the_operator_and_the_api_run_as_containers_and_a_select_loads(
    container_node: ContainerNode, kubeconfig: str, namespace: str, crds: None, tmp_path: Path
) -> None:
    overlay = MANIFESTS / "overlays" / "container-node"
    wrapper = write_wrapper(tmp_path / "install", overlay, namespace, [CONFINE_OPERATOR])
    text = without_namespace_object(render_text(wrapper))
    objects = [o for o in yaml.safe_load_all(text) if o]
    kubectl(["apply", "--server-side", "-f", "-"], kubeconfig, text)
    try:

        def ready_pods() -> list[dict[str, Any]] | None:
            selector = f"{c.LABEL_COMPONENT} in (operator,api)"
            pods = get(kubeconfig, "pods", "-n", namespace, "-l", selector)["items"]
            ready = [
                p
                for p in pods
                if any(
                    cond["type"] == "Ready" and cond["status"] == "True"
                    for cond in p["status"].get("conditions") or []
                )
            ]
            return ready if len(ready) == replicas else None

        # Every replica Ready: the operator's leader and hot standby, and the API.
        replicas = sum(
            int(o["spec"].get("replicas", 1)) for o in objects if o["kind"] == "Deployment"
        )
        assert replicas == 3, replicas

        pods = eventually(ready_pods, timeout=START_S)
        listing = kubectl(["get", "pods", "-n", namespace, "-o", "wide"], kubeconfig).stdout
        logs = kubectl(
            ["logs", "-n", namespace, "-l", f"{c.LABEL_COMPONENT} in (operator,api)", "--tail=30"],
            kubeconfig,
        ).stdout
        assert pods, (
            f"the operator and the API are not Ready on the container node:\n{listing}{logs}"
        )
        for pod in pods:
            assert pod["spec"]["nodeName"] == container_node.name
            statuses = pod["status"]["containerStatuses"]
            assert statuses[0]["containerID"].startswith("containerd://")
            assert statuses[0]["image"].endswith(CONTROL_PLANE_IMAGE.rsplit("/", 1)[1])
        api = next(p for p in pods if p["metadata"]["labels"][c.LABEL_COMPONENT] == "api")
        url = f"http://{api['status']['podIP']}:3001"
        token = get(kubeconfig, "secret", "-n", namespace, "fovea-models-api-token")["data"]
        auth = {"Authorization": f"Bearer {base64.b64decode(token['token']).decode()}"}
        with httpx.Client(base_url=url, timeout=LOAD_S + 30) as http:
            assert eventually(lambda: http.get("/readyz").status_code == 200, timeout=60)
            assert MODEL in http.get("/api/models/config").json()["models"][TASK]["options"]
            answer = http.post(
                "/api/models/select",
                params={"task_type": TASK, "model_name": MODEL, "wait": LOAD_S},
                headers=auth,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["selected_model"] == MODEL
            assert TASK in http.get("/api/models/status").json()["loaded_models"]
        # The containerized operator created the model pod and saw it Ready.
        selection = get(kubeconfig, "-n", namespace, f"{c.SELECTION_PLURAL}.{c.GROUP}")["items"]
        assert [s["status"]["phase"] for s in selection] == ["Ready"]
        # Its pod runs the model-pod image, which the container node does not hold.
        assert selection[0]["status"]["node"] != container_node.name
    finally:
        delete_cluster_rbac(objects, kubeconfig)


def test_the_inference_route_reaches_a_pod_on_the_container_node_through_its_cni_address(
    container_node: ContainerNode, kube: Kube, kubeconfig: str, namespace: str
) -> None:
    # The selection's Service (the operator's own build_service) selects a pod that runs as a
    # container with a bridge-CNI address; the route sends to the EndpointSlice's address.
    kube.apply_catalog(tiny_catalog({TASK: {"m": tiny_option(0.1)}}))
    kube.select(TASK, "m")
    sel = kube.selection(TASK)
    core = k8s.CoreV1Api(kube.api)
    name, uid = sel["metadata"]["name"], sel["metadata"]["uid"]
    core.create_namespaced_service(namespace, build_service(name, namespace, uid, TASK, "m"))
    body = http_model.pod(
        "m-in-a-container", name, "m", image=CONTROL_PLANE_IMAGE, **ON_CONTAINER_NODE
    )
    core.create_namespaced_pod(namespace, body)
    server = ApiServer(Settings(kubeconfig=kubeconfig, namespace=namespace)).start()
    try:
        server.wait_ready()
        answer = server.http.post(f"/api/models/predict/{TASK}", json={"x": 1}, timeout=START_S)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"pod": "m-in-a-container"}  # the container's own word
        pod = get(kubeconfig, "pod", "-n", namespace, "m-in-a-container")
        assert pod["spec"]["nodeName"] == container_node.name
        endpoints = server.http.get("/api/models/inference").json()["tasks"][TASK]["endpoints"]
        assert [ep["address"] for ep in endpoints] == [f"http://{pod['status']['podIP']}:8080"]
        assert pod["status"]["podIP"].startswith("10.88.0.")
    finally:
        server.stop()
