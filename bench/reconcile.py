"""Benchmark the operator against a real local API server.

Prints:
1. ModelSelection change -> model-server pod created: p50 and p95 over 100
   changes (each change is a new model for one selection; the clock stops when
   the watch sees the new pod).
2. Time to converge 1,000 selections across 50 namespaces onto 100 GPU nodes:
   from the first create until every selection has its pod and a status.
3. The operator's peak RSS during the run.

The 100 GPU nodes are Node objects registered by this script (80 GiB each,
time-sliced); no agent runs their pods, so pods stay bound but not started:
what is measured is the operator (plan, create, status), not model loading.

Usage: .venv/bin/python bench/reconcile.py [--selections 1000] [--namespaces 50] [--nodes 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client, watch

from fovea.domain import constants as c
from fovea.kube import api_client, install_cluster_scoped
from fovea.localcluster.binaries import ensure_binaries, put_kubectl_on_path
from fovea.localcluster.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]


def fake_gpu_node(name: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                c.NODE_LABEL_GPU_MEMORY_MIB: str(80 * 1024),
                c.NODE_LABEL_GPU_COUNT: "1",
                c.NODE_LABEL_GPU_REPLICAS: "16",
                c.NODE_LABEL_GPU_PRODUCT: "Bench-GPU-80GiB",
                c.NODE_LABEL_SIMULATED: "true",
            },
        },
        "status": {
            "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", c.RESOURCE_GPU: "16"},
            "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110", c.RESOURCE_GPU: "16"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Bench",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
        },
    }


def catalog(options: int) -> dict[str, Any]:
    opts = {
        f"m{i}": {"modelId": f"bench-{i}", "framework": "pytorch", "vramGb": 4.0}
        for i in range(options)
    }
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CATALOG_KIND,
        "metadata": {"name": "default"},
        "spec": {"tasks": {"task": {"options": opts}}},
    }


def selection(name: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.SELECTION_KIND,
        "metadata": {"name": name},
        "spec": {"task": "task", "model": model},
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--selections", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()

    put_kubectl_on_path(ensure_binaries())
    state = Path(tempfile.mkdtemp(prefix="fovea-bench-reconcile-"))
    cluster = LocalCluster(state, gpus="none", log=lambda _: None)
    cluster.start()
    operator: subprocess.Popen[bytes] | None = None
    try:
        kubeconfig = str(cluster.kubeconfig)
        env = {**os.environ, "KUBECONFIG": kubeconfig}
        install_cluster_scoped(kubeconfig)
        api = api_client(kubeconfig)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        for i in range(args.nodes):
            core.create_node(fake_gpu_node(f"bench-gpu-{i:03d}"))
        namespaces = [f"bench-{i:02d}" for i in range(args.namespaces)]
        for ns in [*namespaces, "bench-latency"]:
            core.create_namespace({"metadata": {"name": ns}})
            custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, ns, c.CATALOG_PLURAL, catalog(2)
            )
        log = open(state / "operator.log", "wb")  # noqa: SIM115
        operator = subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", "operator"],
            env={**env, "FOVEA_OPERATOR_LEASE_NAMESPACE": "default"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        peak = {"rss": 0}
        done = threading.Event()

        def sample() -> None:
            proc = psutil.Process(operator.pid)
            while not done.is_set():
                try:
                    peak["rss"] = max(peak["rss"], proc.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.05)

        threading.Thread(target=sample, daemon=True).start()
        time.sleep(3)  # the operator starts and takes its Lease

        latencies = change_latency(core, custom, args.changes)
        print(
            f"change -> pod created over {len(latencies)} changes: "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"p95 {pct(latencies, 0.95) * 1000:.0f} ms (targets 250 ms, 1000 ms)"
        )

        seconds = converge(custom, namespaces, args.selections)
        print(
            f"converge {args.selections} selections in {args.namespaces} namespaces on "
            f"{args.nodes} GPU nodes: {seconds:.1f} s (target 30 s)"
        )
        done.set()
        print(f"operator peak RSS: {peak['rss'] / 2**20:.0f} MiB")
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        cluster.stop()
    return 0


def change_latency(core: client.CoreV1Api, custom: client.CustomObjectsApi, n: int) -> list[float]:
    """Each change is a new selection in its own task slot; the watch stamps its pod."""
    ns = "bench-latency"
    seen: dict[str, float] = {}
    ready = threading.Event()

    def watch_pods() -> None:
        stream = watch.Watch()
        ready.set()
        for event in stream.stream(core.list_namespaced_pod, ns, timeout_seconds=600):
            if event["type"] == "ADDED":
                owner = event["object"].metadata.labels[c.LABEL_SELECTION]
                seen.setdefault(owner, time.monotonic())
            if len(seen) >= n:
                stream.stop()

    thread = threading.Thread(target=watch_pods, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.5)
    latencies = []
    for i in range(n):
        name = f"change-{i:03d}"
        start = time.monotonic()
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, ns, c.SELECTION_PLURAL, selection(name, "m0")
        )
        if not _until(lambda name=name: name in seen, 30):
            raise SystemExit(f"no pod for change {i} within 30 s")
        latencies.append(seen[name] - start)
    return latencies


def converge(custom: client.CustomObjectsApi, namespaces: list[str], total: int) -> float:
    per_ns = total // len(namespaces)
    jobs = [(ns, f"sel-{j:03d}") for ns in namespaces for j in range(per_ns)]
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda job: custom.create_namespaced_custom_object(
                    c.GROUP, c.VERSION, job[0], c.SELECTION_PLURAL, selection(job[1], "m0")
                ),
                jobs,
            )
        )

    def converged() -> bool:
        items = custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.SELECTION_PLURAL)["items"]
        mine = [
            s
            for s in items
            if s["metadata"]["namespace"].startswith("bench-")
            and s["metadata"]["namespace"] != "bench-latency"
        ]
        return len(mine) == len(jobs) and all((s.get("status") or {}).get("pod") for s in mine)

    if not _until(converged, 300, interval=0.5):
        raise SystemExit("did not converge within 300 s")
    return time.monotonic() - start


def _until(check: Any, timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


if __name__ == "__main__":
    sys.exit(main())
