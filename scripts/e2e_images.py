"""`make e2e-images`: a model pod from the CPU model-pod image, on the container node, Ready.

    .venv/bin/python scripts/e2e_images.py [--image IMAGE] [--keep]

Starts a local cluster (no GPU nodes) and its container node in a temporary
state directory, imports IMAGE (default: the tag scripts/build-images.sh gives
model-pod-cpu) from Docker into the node's containerd, and runs the demo
catalog's smallest model (mlp-tracker: a tiny plain-torch MLP) in a pod from
it, with the env the operator gives model pods and a memory limit. Passes when
the pod is Ready on the container node (its /readyz answers through the pod
network) and the pod's memory cgroup holds the limit. Prints each step's time;
exit status 0 on success, 1 on failure (with the pod's state and log).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

from fovea.domain import constants as c
from fovea.localcluster.binaries import ensure_binaries
from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.containernode import ContainerNode
from fovea.localcluster.containernode_config import NODE_KIND, NODE_KIND_LABEL, TAINT_KEY
from fovea.localcluster.rest import ApiError, Rest

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"ghcr.io/fovea-models/model-pod:{VERSION}-cpu"
NAMESPACE = "e2e-images"
MEMORY_LIMIT = "2Gi"
READY_S = 600.0


def model_pod(image: str) -> dict[str, Any]:
    env = {
        c.ENV_TASK: "object_tracking",
        c.ENV_MODEL: "mlp-tracker",
        c.ENV_MODEL_ID: "mlp-tiny",
        c.ENV_FRAMEWORK: "pytorch",
        c.ENV_DEVICE: "cpu",
        c.ENV_SELECTION: "object-tracking",
        c.ENV_NAMESPACE: NAMESPACE,
        c.ENV_POD_NAME: "model",
        c.ENV_DECLARED_VRAM_GB: "0",
        c.ENV_BATCH_SIZE: "1",
        c.ENV_ALLOW_RANDOM_WEIGHTS: "1",
        c.ENV_ARCHITECTURE: "mlp-tiny",
        c.ENV_PORT: str(c.MODEL_POD_PORT),
    }
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2}
    return {
        "metadata": {"name": "model"},
        "spec": {
            "nodeSelector": {NODE_KIND_LABEL: NODE_KIND},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "model-server",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["fovea-models", "model-pod"],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "ports": [{"name": "http", "containerPort": c.MODEL_POD_PORT}],
                    "resources": {"limits": {"memory": MEMORY_LIMIT, "cpu": "1"}},
                    "readinessProbe": probe,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(cond["type"] == "Ready" and cond["status"] == "True" for cond in conditions)


def memory_limit_bytes(pod_uid: str) -> int | None:
    """The pod cgroup's memory limit (cgroup v1 or v2), as the kubelet set it."""
    for path in (
        Path(f"/sys/fs/cgroup/memory/kubepods/burstable/pod{pod_uid}/memory.limit_in_bytes"),
        Path(f"/sys/fs/cgroup/memory/kubepods/pod{pod_uid}/memory.limit_in_bytes"),
        Path(f"/sys/fs/cgroup/kubepods/burstable/pod{pod_uid}/memory.max"),
        Path(f"/sys/fs/cgroup/kubepods/pod{pod_uid}/memory.max"),
    ):
        if path.exists():
            return int(path.read_text().strip())
    return None


def run(image: str, keep: bool) -> bool:
    with tempfile.TemporaryDirectory(prefix="fovea-e2e-images-") as tmp:
        began = time.monotonic()
        cluster = LocalCluster(Path(tmp) / "cluster", gpus="none", log=lambda message: None)
        cluster.start()
        node = ContainerNode(cluster.state, cluster.server)
        try:
            node.start()
            started = time.monotonic()
            node.import_from_docker(image)
            print(f"e2e-images: {image} imported in {time.monotonic() - started:.1f}s")
            rest = Rest(cluster.kubeconfig)
            rest.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
            while True:
                try:
                    rest.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
                    break
                except ApiError:
                    time.sleep(0.1)
            created = time.monotonic()
            rest.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", body=model_pod(image))
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/model"
            pod = rest.get(path)
            while not ready(pod) and time.monotonic() - created < READY_S:
                time.sleep(1)
                pod = rest.get(path)
            ok = ready(pod) and pod["spec"].get("nodeName") == node.name
            if ok:
                took = time.monotonic() - created
                print(f"e2e-images: model pod Ready on {node.name} in {took:.1f}s")
                url = f"http://{pod['status']['podIP']}:{c.MODEL_POD_PORT}/readyz"
                answer = httpx.get(url, timeout=10)
                print(f"e2e-images: GET {url} -> {answer.status_code} {answer.text[:200]}")
                ok = answer.status_code == 200
                limit = memory_limit_bytes(pod["metadata"]["uid"])
                print(f"e2e-images: pod memory cgroup limit {limit} bytes (spec {MEMORY_LIMIT})")
                ok = ok and limit == 2 * 2**30
            else:
                print(f"e2e-images: the model pod is not Ready: {pod.get('status')}")
                kubectl = ensure_binaries() / "kubectl"
                logs = [str(kubectl), "--kubeconfig", str(cluster.kubeconfig), "logs"]
                subprocess.run([*logs, "-n", NAMESPACE, "model", "--tail=40"], check=False)
            print(f"e2e-images: {'passed' if ok else 'FAILED'} in {time.monotonic() - began:.0f}s")
            if keep:
                input(f"kubeconfig {cluster.kubeconfig}; Enter stops the cluster ")
            rest.close()
            return ok
        finally:
            node.stop()
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--keep", action="store_true", help="wait for Enter before stopping")
    args = parser.parse_args()
    sys.exit(0 if run(args.image, args.keep) else 1)


if __name__ == "__main__":
    main()
