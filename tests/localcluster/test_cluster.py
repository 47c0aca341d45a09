"""The local cluster end to end: control plane, nodes, scheduler and node agent."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest

from fovea.domain import constants as c
from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.nodes import TIME_SLICING_REPLICAS
from fovea.localcluster.rest import ApiError, Rest
from waiting import eventually

GPU_NODES = {"fovea-gpu-0", "fovea-gpu-1"}


@pytest.fixture(scope="module")
def rest(kubeconfig: str) -> Iterator[Rest]:
    client = Rest(Path(kubeconfig), pool_size=4)
    yield client
    client.close()


def pod_body(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "local", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"containers": [container], **spec},
    }


def create(rest: Rest, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return rest.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=body)


def get(rest: Rest, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def pod_where(
    rest: Rest, namespace: str, name: str, check: Callable[[dict[str, Any]], bool]
) -> Callable[[], dict[str, Any] | None]:
    """A waitable: the pod once `check` holds for it, else None."""

    def probe() -> dict[str, Any] | None:
        pod = get(rest, namespace, name)
        return pod if pod is not None and check(pod) else None

    return probe


def restarted(times: int) -> Callable[[dict[str, Any]], bool]:
    return lambda pod: int(container_status(pod).get("restartCount", 0)) >= times


def gone(rest: Rest, namespace: str, name: str) -> bool:
    return get(rest, namespace, name) is None


def container_status(pod: dict[str, Any] | None) -> dict[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def phase(rest: Rest, namespace: str, name: str, wanted: str) -> dict[str, Any] | None:
    pod = get(rest, namespace, name)
    return pod if pod and pod.get("status", {}).get("phase") == wanted else None


def ready(pod: dict[str, Any] | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions") or []
    return any(x["type"] == "Ready" and x["status"] == "True" for x in conditions)


def pid_of(pod: dict[str, Any]) -> int:
    return int(container_status(pod)["containerID"].removeprefix("local://"))


def log_of(cluster: LocalCluster, pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    return cluster.state.pod_log(meta["namespace"], meta["name"], meta["uid"]).read_text()


PRINT_ENV = [
    "python",
    "-c",
    "import json, os; print(json.dumps(dict(os.environ)))",
]

# --- control plane and nodes ------------------------------------------------------------------


def test_kubectl_works_and_version_is_the_real_release(kubeconfig: str, rest: Rest) -> None:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert set(result.stdout.split()) == {f"node/{n}" for n in (*GPU_NODES, "fovea-cpu-0")}
    version = rest.get("/version")
    assert version["gitVersion"] == "v1.36.3"
    assert (version["major"], version["minor"]) == ("1", "36")


def test_nodes_carry_gpu_labels_capacity_and_a_lease(rest: Rest) -> None:
    nodes = {n["metadata"]["name"]: n for n in rest.get("/api/v1/nodes")["items"]}
    big = nodes["fovea-gpu-1"]
    labels = big["metadata"]["labels"]
    assert labels[c.NODE_LABEL_GPU_MEMORY_MIB] == str(80 * 1024)
    assert labels[c.NODE_LABEL_GPU_COUNT] == "1"
    assert labels[c.NODE_LABEL_GPU_PRODUCT] == "Simulated-GPU-80GiB"
    assert labels[c.NODE_LABEL_SIMULATED] == "true"
    # Time-sliced like the device plugin's `replicas`: 8 pods may share each GPU.
    assert labels[c.NODE_LABEL_GPU_REPLICAS] == str(TIME_SLICING_REPLICAS)
    assert big["status"]["capacity"][c.RESOURCE_GPU] == str(TIME_SLICING_REPLICAS)
    assert nodes["fovea-gpu-0"]["status"]["allocatable"][c.RESOURCE_GPU] == str(
        2 * TIME_SLICING_REPLICAS
    )
    assert c.RESOURCE_GPU not in nodes["fovea-cpu-0"]["status"]["allocatable"]
    assert not big.get("spec", {}).get("taints")
    for name, node in nodes.items():
        conditions = {x["type"]: x["status"] for x in node["status"]["conditions"]}
        assert conditions["Ready"] == "True", name
        lease = rest.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
        assert lease["spec"]["holderIdentity"] == name


# --- scheduling ---------------------------------------------------------------------------------


def test_gpu_pod_binds_only_to_a_gpu_node(rest: Rest, namespace: str) -> None:
    for i in range(3):
        create(rest, namespace, pod_body(
            f"gpu-{i}", ["sleep", "120"],
            container={"resources": {"limits": {c.RESOURCE_GPU: "1"}}},
        ))  # fmt: skip
    for i in range(3):
        pod = eventually(partial(phase, rest, namespace, f"gpu-{i}", "Running"), what="Running")
        assert pod["spec"]["nodeName"] in GPU_NODES
    # Give the three GPUs back now rather than when the namespace goes.
    for i in range(3):
        rest.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/gpu-{i}")


def test_pod_wanting_more_gpus_than_any_node_stays_pending(rest: Rest, namespace: str) -> None:
    too_many = str(2 * TIME_SLICING_REPLICAS + 1)  # more than the biggest node advertises
    create(rest, namespace, pod_body(
        "greedy", ["sleep", "120"], container={"resources": {"limits": {c.RESOURCE_GPU: too_many}}},
    ))  # fmt: skip

    def unschedulable() -> dict[str, Any] | None:
        pod = get(rest, namespace, "greedy") or {}
        for condition in pod.get("status", {}).get("conditions") or []:
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return condition
        return None

    condition = eventually(unschedulable, what="Unschedulable")
    assert "nvidia.com/gpu" in condition["message"]
    # The scheduler has decided: it found no node for the pod, so it is bound to none.
    pod = get(rest, namespace, "greedy")
    assert pod is not None and pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


# --- the node agent -----------------------------------------------------------------------------


def test_pods_declaring_one_port_each_serve_at_their_own_address(
    rest: Rest, namespace: str
) -> None:
    """Two pods on 8080 side by side; a Service's EndpointSlice (the controller-manager's)."""
    for name in ("web-a", "web-b"):
        create(rest, namespace, pod_body(
            name, ["python", "-m", "http.server", "--bind", "$(HOST)", "$(PORT)"],
            metadata={"labels": {"app": name}},
            container={
                "ports": [{"containerPort": c.MODEL_POD_PORT, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                "resources": {"limits": {c.RESOURCE_GPU: "1"}},
            },
        ))  # fmt: skip
    pods = [
        eventually(pod_where(rest, namespace, n, ready), what="Ready") for n in ("web-a", "web-b")
    ]
    addresses = [pod["status"]["podIP"] for pod in pods]
    assert len(set(addresses)) == 2 and "127.0.0.1" not in addresses
    for pod, address in zip(pods, addresses, strict=True):
        status = pod["status"]
        assert status["phase"] == "Running" and status["hostIP"] == "127.0.0.1"
        assert status["podIPs"] == [{"ip": address}] and status["startTime"]
        state = container_status(pod)
        assert state["ready"] and state["restartCount"] == 0 and "running" in state["state"]
        kinds = {x["type"] for x in status["conditions"]}
        assert {"PodScheduled", "Initialized", "ContainersReady", "Ready"} <= kinds
        annotations = pod["metadata"]["annotations"]
        assert annotations[c.ANNOTATION_SIMULATED_GPU] == "true"
        assert int(annotations[c.ANNOTATION_LOCAL_PORT]) == c.MODEL_POD_PORT
        with urllib.request.urlopen(f"http://{address}:{c.MODEL_POD_PORT}/", timeout=5) as answer:
            assert answer.status == 200
    rest.request("POST", f"/api/v1/namespaces/{namespace}/services", body={
        "metadata": {"name": "web-a"},
        "spec": {"selector": {"app": "web-a"}, "ports": [{"port": 80, "targetPort": "http"}]},
    })  # fmt: skip

    def endpoints() -> list[tuple[list[str], int]] | None:
        slices = rest.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
            labelSelector="kubernetes.io/service-name=web-a",
        )["items"]
        found = [
            (endpoint["addresses"], port["port"])
            for piece in slices
            for endpoint in piece.get("endpoints") or []
            for port in piece.get("ports") or []
        ]
        return found or None

    assert eventually(endpoints, what="an EndpointSlice") == [([addresses[0]], c.MODEL_POD_PORT)]


def test_env_refs_and_agent_variables_reach_the_process(
    rest: Rest, namespace: str, local_cluster: LocalCluster
) -> None:
    rest.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "metadata": {"name": "creds"}, "stringData": {"token": "s3cret"},
    })  # fmt: skip
    rest.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body={
        "metadata": {"name": "settings"}, "data": {"mode": "fast"},
    })  # fmt: skip
    env = [
        {"name": "PLAIN", "value": "on-$(PORT)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "PORT", "value": "1"},  # the agent's port wins: it is where the pod listens
    ]
    for name, gpu in (("on-gpu", "1"), ("on-cpu", None)):
        container: dict[str, Any] = {"env": env}
        if gpu:
            container["resources"] = {"limits": {c.RESOURCE_GPU: gpu}}
        else:
            container["resources"] = {"requests": {"cpu": "100m"}}
        body = pod_body(name, PRINT_ENV, restartPolicy="Never", container=container)
        if not gpu:
            body["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "fovea-cpu-0"}
        create(rest, namespace, body)
    on_gpu = eventually(lambda: phase(rest, namespace, "on-gpu", "Succeeded"), what="Succeeded")
    on_cpu = eventually(lambda: phase(rest, namespace, "on-cpu", "Succeeded"), what="Succeeded")
    seen = json.loads(log_of(local_cluster, on_gpu))
    port = on_gpu["metadata"]["annotations"][c.ANNOTATION_LOCAL_PORT]
    assert seen["PORT"] == port != "1"
    # Its own address, also through the fieldRef status.podIP a pod spec may use.
    assert seen["HOST"] == on_gpu["status"]["podIP"] != on_gpu["status"]["hostIP"]
    assert seen["PLAIN"] == f"on-{port}"
    assert (seen["POD_NAME"], seen["POD_NS"]) == ("on-gpu", namespace)
    assert seen["NODE"] == on_gpu["spec"]["nodeName"] in GPU_NODES
    assert (seen["TOKEN"], seen["MODE"]) == ("s3cret", "fast")
    assert seen[c.ENV_SIMULATED_GPU] == "1"
    assert Path(seen["KUBECONFIG"]).is_file()
    cpu_env = json.loads(log_of(local_cluster, on_cpu))
    assert c.ENV_SIMULATED_GPU not in cpu_env
    assert c.ANNOTATION_SIMULATED_GPU not in on_cpu["metadata"].get("annotations", {})


def test_missing_secret_is_reported_and_nothing_runs(rest: Rest, namespace: str) -> None:
    create(rest, namespace, pod_body("nosecret", ["sleep", "60"], container={"env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}},
    ]}))  # fmt: skip

    def waiting_reason() -> str | None:
        state = container_status(get(rest, namespace, "nosecret")).get("state", {})
        return str(state.get("waiting", {}).get("reason", "")) or None

    assert eventually(waiting_reason, what="waiting reason") == "CreateContainerConfigError"
    assert phase(rest, namespace, "nosecret", "Pending") is not None


def test_pod_credentials_are_its_service_account_under_rbac(
    rest: Rest, namespace: str, local_cluster: LocalCluster
) -> None:
    script = (
        "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'; echo; "
        "kubectl auth can-i list secrets; kubectl auth can-i get pods; true"
    )
    create(rest, namespace, pod_body("whoami", ["sh", "-c", script], restartPolicy="Never"))
    pod = eventually(lambda: phase(rest, namespace, "whoami", "Succeeded"), what="Succeeded")
    lines = log_of(local_cluster, pod).split()
    assert lines[:3] == [f"system:serviceaccount:{namespace}:default", "no", "no"]


def test_crashing_pod_is_restarted_with_its_exit_code_recorded(rest: Rest, namespace: str) -> None:
    create(rest, namespace, pod_body("crash", ["python", "-c", "raise SystemExit(3)"]))
    pod = eventually(pod_where(rest, namespace, "crash", restarted(2)), what="two restarts")
    state = container_status(pod)
    assert state["lastState"]["terminated"]["exitCode"] == 3
    assert state["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["phase"] == "Running"


@pytest.mark.parametrize(
    ("policy", "code", "expected"),
    [("Never", 4, "Failed"), ("OnFailure", 0, "Succeeded"), ("Never", 0, "Succeeded")],
)
def test_restart_policy_ends_pods(
    rest: Rest, namespace: str, policy: str, code: int, expected: str
) -> None:
    command = ["python", "-c", f"raise SystemExit({code})"]
    create(rest, namespace, pod_body("once", command, restartPolicy=policy))
    pod = eventually(lambda: phase(rest, namespace, "once", expected), what=expected)
    state = container_status(pod)
    assert state["state"]["terminated"]["exitCode"] == code
    assert state["restartCount"] == 0


def test_failing_liveness_probe_restarts_the_process(rest: Rest, namespace: str) -> None:
    create(rest, namespace, pod_body(
        "unlively", ["python", "-m", "http.server", "$(PORT)"],
        container={"livenessProbe": {
            "httpGet": {"path": "/no-such-file", "port": 8080},
            "periodSeconds": 1, "failureThreshold": 2,
        }},
        terminationGracePeriodSeconds=1,
    ))  # fmt: skip
    pod = eventually(pod_where(rest, namespace, "unlively", restarted(1)), what="a restart")
    assert "Liveness" in container_status(pod)["lastState"]["terminated"]["message"]


def test_deleting_a_pod_kills_its_process_and_removes_it(rest: Rest, namespace: str) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    create(rest, namespace, pod_body("gentle", ["sleep", "300"]))
    create(rest, namespace, pod_body(
        "stubborn", ["python", "-c", stubborn], terminationGracePeriodSeconds=1,
    ))  # fmt: skip
    pods = [
        eventually(partial(phase, rest, namespace, n, "Running"), what="Running")
        for n in ("gentle", "stubborn")
    ]
    pids = [pid_of(p) for p in pods]
    assert all(psutil.pid_exists(pid) for pid in pids)
    started = time.monotonic()
    for name in ("gentle", "stubborn"):
        rest.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")
    for name in ("gentle", "stubborn"):
        eventually(partial(gone, rest, namespace, name), timeout=15, what="deletion")
    assert time.monotonic() - started < 10
    eventually(lambda: not any(_alive(pid) for pid in pids), timeout=5, what="processes to end")


def test_deleting_an_owner_garbage_collects_its_pod(rest: Rest, namespace: str) -> None:
    owner = rest.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body={
        "metadata": {"name": "owner"}, "data": {},
    })  # fmt: skip
    reference = {
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner["metadata"]["uid"], "blockOwnerDeletion": True,
    }  # fmt: skip
    create(rest, namespace, pod_body(
        "child", ["sleep", "300"], metadata={"ownerReferences": [reference]},
    ))  # fmt: skip
    pid = pid_of(eventually(lambda: phase(rest, namespace, "child", "Running"), what="Running"))
    rest.request("DELETE", f"/api/v1/namespaces/{namespace}/configmaps/owner")
    eventually(lambda: get(rest, namespace, "child") is None, timeout=60, what="garbage collection")
    eventually(lambda: not _alive(pid), timeout=5, what="the child's process to end")


def test_deployment_runs_its_replicas(rest: Rest, namespace: str) -> None:
    labels = {"app": "dep"}
    template = pod_body("x", ["sleep", "300"])
    template["metadata"] = {"labels": labels}
    rest.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body={
        "metadata": {"name": "dep"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template},
    })  # fmt: skip

    def available() -> int:
        deployment = rest.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/dep")
        return int(deployment.get("status", {}).get("availableReplicas") or 0)

    assert eventually(lambda: available() == 2 or None, what="2 available replicas")


def test_pods_on_other_nodes_are_not_the_agents(rest: Rest, namespace: str) -> None:
    create(rest, namespace, pod_body("elsewhere", ["sleep", "60"], nodeName="not-a-local-node"))
    # A pod for one of the agent's nodes, created after it: once that one runs, the agent
    # has been at work since "elsewhere" was created.
    create(rest, namespace, pod_body("here", ["sleep", "60"], nodeName="fovea-cpu-0"))
    eventually(lambda: phase(rest, namespace, "here", "Running"), what="Running")
    pod = get(rest, namespace, "elsewhere")
    assert pod is not None and not pod["status"].get("containerStatuses")
    assert c.ANNOTATION_LOCAL_PORT not in pod["metadata"].get("annotations", {})
    rest.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/elsewhere",
                 body={"gracePeriodSeconds": 0})  # fmt: skip


def test_namespace_deletion_completes(rest: Rest, kubeconfig: str) -> None:
    name = f"doomed-{os.getpid()}"
    rest.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    eventually(lambda: _exists(rest, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
             what="default service account")  # fmt: skip
    create(rest, name, pod_body("p", ["sleep", "300"], terminationGracePeriodSeconds=1))
    pid = pid_of(eventually(lambda: phase(rest, name, "p", "Running"), what="Running"))
    rest.request("DELETE", f"/api/v1/namespaces/{name}")
    eventually(lambda: not _exists(rest, f"/api/v1/namespaces/{name}"), timeout=90,
             what="namespace deletion")  # fmt: skip
    assert not _alive(pid)


def _exists(rest: Rest, path: str) -> bool:
    try:
        rest.get(path)
        return True
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
