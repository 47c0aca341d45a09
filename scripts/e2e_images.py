"""`make e2e-images`: the operator places a model pod on the container node, from the image.

    .venv/bin/python scripts/e2e_images.py [--image IMAGE] [--keep]

Starts a local cluster (one process node, no GPUs) and its container node in
a temporary state directory, imports IMAGE (default: the tag
scripts/build-images.sh gives model-pod-cpu) from Docker into the node's
containerd, installs the CRDs, the demo catalog and the real operator (a
process here, with FOVEA_OPERATOR_MODEL_POD_IMAGE=IMAGE), and selects the
demo catalog's smallest model (mlp-tracker: a tiny plain-torch MLP). Nothing
names the container node: the operator's planner sends the CPU pod there
because the node holds the pod's image and has room (fovea.domain.nodes).
Passes when the selection is Ready with the pod bound to the container node,
running IMAGE as a container (the kubelet's containerStatuses), having
reported the memory it measured, answering /readyz at its pod IP, and with
the pod cgroup's memory limit the operator's pod spec asked for. Prints each
step's time; exit status 0 on success, 1 on failure (with the pods' state and
the operator's log).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from fovea.domain.units import parse_quantity
from fovea.kube import install_cluster_scoped
from fovea.localcluster.binaries import ensure_binaries
from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.containernode import ContainerNode
from fovea.localcluster.rest import ApiError, Rest

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"ghcr.io/fovea-models/model-pod:{VERSION}-cpu"
CATALOG = REPO / "manifests" / "demo-catalog" / "catalog.yaml"
NAMESPACE = "e2e-images"
TASK, MODEL = "object_tracking", "mlp-tracker"
SELECTIONS = f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{NAMESPACE}/{c.SELECTION_PLURAL}"
READY_S = 600.0


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


def ready_selection(rest: Rest) -> dict[str, Any] | None:
    sel: dict[str, Any] = rest.get(f"{SELECTIONS}/{selection_name(TASK)}")
    return sel if ready(sel) else None


def start_operator(kubeconfig: str, image: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "FOVEA_OPERATOR_MODEL_POD_IMAGE": image,
        "FOVEA_OPERATOR_LEASE_NAMESPACE": NAMESPACE,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", "operator", "-n", NAMESPACE],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run(image: str, keep: bool) -> bool:
    with tempfile.TemporaryDirectory(prefix="fovea-e2e-images-") as tmp:
        began = time.monotonic()
        cluster = LocalCluster(Path(tmp) / "cluster", gpus="none", log=lambda message: None)
        cluster.start()
        node = ContainerNode(cluster.state, cluster.server)
        operator: subprocess.Popen[bytes] | None = None
        operator_log = Path(tmp) / "operator.log"
        kubeconfig = str(cluster.kubeconfig)
        kubectl = [str(ensure_binaries() / "kubectl"), "--kubeconfig", kubeconfig]
        try:
            node.start()
            started = time.monotonic()
            node.import_from_docker(image)
            took = time.monotonic() - started
            print(f"e2e-images: {image} imported and listed on the Node in {took:.1f}s")
            install_cluster_scoped(kubeconfig)
            rest = Rest(cluster.kubeconfig)
            rest.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
            while True:
                try:
                    rest.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
                    break
                except ApiError:
                    time.sleep(0.1)
            subprocess.run([*kubectl, "apply", "-n", NAMESPACE, "-f", str(CATALOG)], check=True)
            operator = start_operator(kubeconfig, image, operator_log)
            created = time.monotonic()
            selection = {
                "apiVersion": c.API_VERSION,
                "kind": c.SELECTION_KIND,
                "metadata": {"name": selection_name(TASK)},
                "spec": {"task": TASK, "model": MODEL},
            }
            rest.request("POST", SELECTIONS, body=selection)
            sel = ready_selection(rest)
            while sel is None and time.monotonic() - created < READY_S:
                time.sleep(1)
                sel = ready_selection(rest)
            ok = sel is not None and check(sel, rest, node, image, time.monotonic() - created)
            if not ok:
                subprocess.run([*kubectl, "get", "pods,msel", "-n", NAMESPACE, "-o", "wide"])
                subprocess.run([*kubectl, "describe", "pods", "-n", NAMESPACE], check=False)
                print(operator_log.read_text()[-4000:])
            print(f"e2e-images: {'passed' if ok else 'FAILED'} in {time.monotonic() - began:.0f}s")
            if keep:
                input(f"kubeconfig {cluster.kubeconfig}; Enter stops the cluster ")
            rest.close()
            return ok
        finally:
            if operator is not None:
                operator.terminate()
                operator.wait(timeout=30)
            node.stop()
            cluster.stop()


def check(sel: dict[str, Any], rest: Rest, node: ContainerNode, image: str, took: float) -> bool:
    """What observers other than the operator say about the Ready selection's pod."""
    status = sel["status"]
    pod = rest.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{status['pod']}")
    bound = pod["spec"].get("nodeName")
    print(f"e2e-images: {TASK}/{MODEL} Ready in {took:.1f}s; pod {status['pod']} bound to {bound}")
    print(
        f"e2e-images: status node={status.get('node')} device={status.get('device')} "
        f"measuredMemoryGb={status.get('measuredMemoryGb')} "
        f"loadTimeSeconds={status.get('loadTimeSeconds')}"
    )
    if bound != node.name or status.get("node") != node.name:
        return False
    container = (pod["status"].get("containerStatuses") or [{}])[0]
    print(f"e2e-images: container image {container.get('image')} ({container.get('imageID')})")
    ok = container.get("image") == image and bool(container.get("imageID"))
    ok = ok and status.get("measuredMemoryGb") is not None
    url = f"http://{pod['status']['podIP']}:{c.MODEL_POD_PORT}/readyz"
    answer = httpx.get(url, timeout=10)
    print(f"e2e-images: GET {url} -> {answer.status_code} {answer.text[:200]}")
    ok = ok and answer.status_code == 200
    spec_limit = pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
    limit = memory_limit_bytes(pod["metadata"]["uid"])
    print(f"e2e-images: pod memory cgroup limit {limit} bytes (spec {spec_limit})")
    return ok and limit == int(parse_quantity(spec_limit))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--keep", action="store_true", help="wait for Enter before stopping")
    args = parser.parse_args()
    sys.exit(0 if run(args.image, args.keep) else 1)


if __name__ == "__main__":
    main()
