"""Benchmark of the container node: start-up, and pod create -> Running beside a process node.

    .venv/bin/python bench/container_node.py [--pods 20] [--image IMAGE]

Starts a local cluster (no GPU nodes) and its container node (a real kubelet
with containerd: localcluster/containernode.py) in a temporary state
directory, then creates pods one at a time and records when a watch first
sees each Running:
- on a process node (the node agent runs `sleep` as a local process);
- on the container node (a pod sandbox from the pause image made here, and a
  container from IMAGE: default the pause image too; pass the control-plane
  image, imported from Docker, for a Python container).
Prints the container node's start-up time and p50/p95 per kind of node.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.containernode import ContainerNode
from fovea.localcluster.containernode_config import (
    NODE_KIND,
    NODE_KIND_LABEL,
    PAUSE_IMAGE,
    TAINT_KEY,
)
from fovea.localcluster.rest import Rest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))
sys.path.insert(0, str(REPO / "bench"))

from pod_watch import RunningWatch  # noqa: E402
from support import bench_parser, create_namespace, percentile_rounded  # noqa: E402


def process_pod(name: str) -> dict[str, Any]:
    container = {"name": "main", "image": "local", "command": ["sleep", "600"]}
    return {
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
    }


def container_pod(name: str, image: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "imagePullPolicy": "Never"}
    if image != PAUSE_IMAGE:
        container["command"] = ["sleep", "600"]
    return {
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "nodeSelector": {NODE_KIND_LABEL: NODE_KIND},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [container],
        },
    }


def measure(rest: Rest, kubeconfig: Path, label: str, pods: list[dict[str, Any]]) -> None:
    namespace = f"bench-{label}-{os.getpid()}"
    create_namespace(rest, namespace)
    watch = RunningWatch(kubeconfig, namespace)
    created: dict[str, float] = {}
    for body in pods:
        name = body["metadata"]["name"]
        created[name] = time.monotonic()
        rest.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=body)
        deadline = time.monotonic() + 60
        while name not in watch.running and time.monotonic() < deadline:
            time.sleep(0.002)
    latencies = [watch.running[n] - t for n, t in created.items() if n in watch.running]
    watch.close()
    rest.request("DELETE", f"/api/v1/namespaces/{namespace}")
    if not latencies:
        print(f"pod create -> Running on the {label} node: no pod reached Running")
        return
    print(
        f"pod create -> Running on the {label} node (one at a time, n={len(latencies)}"
        f" of {len(pods)}): p50 {percentile_rounded(latencies, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile_rounded(latencies, 0.95) * 1000:.0f} ms, "
        f"mean {statistics.mean(latencies) * 1000:.0f} ms"
    )


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--image", default=PAUSE_IMAGE, help="the container node's pod image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fovea-bench-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster", gpus="none", log=lambda message: None)
        cluster.start()
        try:
            node = ContainerNode(cluster.state, cluster.server, log=lambda message: None)
            started = time.monotonic()
            node.start()
            print(
                f"container node start -> Ready: {time.monotonic() - started:.1f}s "
                f"(containerd {node.snapshotter} snapshotter)"
            )
            try:
                if args.image != PAUSE_IMAGE:
                    node.import_from_docker(args.image)
                rest = Rest(cluster.kubeconfig)
                count = args.pods
                measure(
                    rest,
                    cluster.kubeconfig,
                    "process",
                    [process_pod(f"p{i}") for i in range(count)],
                )
                measure(
                    rest,
                    cluster.kubeconfig,
                    "container",
                    [container_pod(f"c{i}", args.image) for i in range(count)],
                )
                rest.close()
            finally:
                node.stop()
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
