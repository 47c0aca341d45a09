"""Benchmark the operator against a real local API server, in device-plugin and DRA mode.

Each mode runs on a fresh local cluster (one simulated 80 GiB GPU node with
the node agent, which publishes ResourceSlices and the DeviceClass
gpu.nvidia.com) with the operator's sharing mode set to `timeSliced`, then
`dra`. Prints, per mode:
1. ModelSelection change -> model-server pod Running: p50 and p95 over 100
   changes (each change is a new selection; the clock stops when the watch
   sees its pod Running, i.e. planned, created, scheduled (in DRA mode: its
   claim allocated and reserved), and started by the node agent with the
   allocated GPU). An anchor selection keeps the GPU's claim in use, and
   each change's selection is deleted once its pod runs.
2. Time to converge 1,000 selections across 50 namespaces onto 100 GPU nodes:
   from the first create until every selection has its pod and a status, and
   until every pod is scheduled (bound to a node; in DRA mode its claim allocated).
3. The operator's peak RSS during the run.
and the DRA figures as multiples of the device-plugin ones (target: within 1.5x).

The 100 GPU nodes are Node objects (and, for DRA, ResourceSlices) registered
by this script (80 GiB each, time-sliced); no agent runs their pods, so pods
stay bound but not started: what is measured is the operator and the
scheduler, not model loading.

Usage: .venv/bin/python bench/reconcile.py [--selections 1000] [--namespaces 50] [--nodes 100]
"""

from __future__ import annotations

import argparse
import signal
import statistics
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
from fovea.localcluster.cluster import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import (
    PYTHON,
    Child,
    add_hollow_gpu_node,
    bench_parser,
    catalog_body,
    cluster_clients,
    local_cluster,
    percentile,
    random_weights_option,
    renew_node_leases,
    selection_body,
    stack_env,
    timed_changes,
    wait_for,
)

GPU_PRODUCT = "Bench-GPU-80GiB"  # the fake GPU nodes' product


def catalog(options: int) -> dict[str, Any]:
    opts = {
        f"m{i}": {"modelId": f"bench-{i}", "framework": "pytorch", "vramGb": 4.0}
        for i in range(options)
    }
    return catalog_body({"tasks": {"task": {"options": opts}}})


def selection(name: str, model: str) -> dict[str, Any]:
    return selection_body(name, "task", model)


MODES = ("timeSliced", "dra")


def tiny_catalog() -> dict[str, Any]:
    """Options whose pods really start on the agent's node: a tiny MLP, random weights."""
    opt = random_weights_option(vram_gb=4.0)
    return catalog_body({"tasks": {"task": {"options": {"m0": opt}}}})


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--selections", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated sharing modes")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the clusters on a kill too
    figures = {mode: run_mode(mode, args) for mode in args.modes.split(",")}
    if set(MODES) <= set(figures):
        base, dra_ = figures["timeSliced"], figures["dra"]
        print("DRA / device plugin (target <= 1.5x):")
        for key in base:
            if key != "rss_mib" and base[key] > 0:
                print(f"  {key}: {dra_[key] / base[key]:.2f}x")
    return 0


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, float]:
    """One mode on a fresh cluster; returns its figures (seconds, MiB)."""
    print(f"--- sharing mode {mode}")
    state = Path(tempfile.mkdtemp(prefix=f"fovea-bench-reconcile-{mode}-"))
    figures: dict[str, float] = {}
    with local_cluster(state, "1x80GiB") as cluster:
        kubeconfig = str(cluster.kubeconfig)
        env = stack_env(kubeconfig, "default", FOVEA_OPERATOR_SHARING_MODE=mode)
        operator = Child([*PYTHON, "operator"], env, state / "operator.log", stop_timeout_s=30)
        try:
            measure_mode(cluster, operator, args, figures)
        finally:
            operator.stop()
    return figures


def measure_mode(
    cluster: LocalCluster, operator: Child, args: argparse.Namespace, figures: dict[str, float]
) -> None:
    """The mode's figures (seconds, MiB) into `figures`, the operator started here."""
    _, api, core, custom = cluster_clients(cluster)
    namespaces = [f"bench-{i:02d}" for i in range(args.namespaces)]
    for ns in [*namespaces, "bench-latency"]:
        core.create_namespace({"metadata": {"name": ns}})
        body = tiny_catalog() if ns == "bench-latency" else catalog(2)
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.CATALOG_PLURAL, body)
    operator.start()
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
    figures["running_p50_s"] = statistics.median(latencies)
    figures["running_p95_s"] = percentile(latencies, 0.95)
    print(
        f"change -> pod Running over {len(latencies)} changes: "
        f"p50 {figures['running_p50_s'] * 1000:.0f} ms, "
        f"p95 {figures['running_p95_s'] * 1000:.0f} ms"
    )

    # The converge phase plans onto the fake nodes only (no agent starts their pods).
    core.patch_node(cluster.nodes[0].name, {"spec": {"unschedulable": True}})
    fake = [f"bench-gpu-{i:03d}" for i in range(args.nodes)]
    for name in fake:
        add_hollow_gpu_node(core, custom, name, GPU_PRODUCT, "Bench")
    threading.Thread(target=renew_node_leases, args=(api, fake, done), daemon=True).start()
    status_s, scheduled_s = converge(core, custom, namespaces, args.selections)
    figures["converge_status_s"], figures["converge_scheduled_s"] = status_s, scheduled_s
    print(
        f"converge {args.selections} selections in {args.namespaces} namespaces on "
        f"{args.nodes} GPU nodes: every status {status_s:.1f} s (target 30 s), "
        f"every pod scheduled {scheduled_s:.1f} s"
    )
    done.set()
    figures["rss_mib"] = peak["rss"] / 2**20
    print(f"operator peak RSS: {figures['rss_mib']:.0f} MiB")


def change_latency(core: client.CoreV1Api, custom: client.CustomObjectsApi, n: int) -> list[float]:
    """Each change is a new selection; the watch stamps its pod Running; then it is deleted.

    An anchor selection keeps a pod (and, in DRA mode, the GPU's claim) in use throughout.
    """
    ns = "bench-latency"
    seen: dict[str, float] = {}
    ready = threading.Event()

    def watch_pods() -> None:
        ready.set()
        while len(seen) < n + 1:  # a watch that ends early starts again (its list first)
            stream = watch.Watch()
            try:
                for event in stream.stream(core.list_namespaced_pod, ns, timeout_seconds=900):
                    pod = event["object"]
                    if event["type"] != "DELETED" and pod.status and pod.status.phase == "Running":
                        owner = pod.metadata.labels[c.LABEL_SELECTION]
                        seen.setdefault(owner, time.monotonic())
                    if len(seen) >= n + 1:
                        stream.stop()
            except Exception as exc:
                print(f"(pod watch ended: {exc!r}; watching again)")

    thread = threading.Thread(target=watch_pods, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.5)
    custom.create_namespaced_custom_object(
        c.GROUP, c.VERSION, ns, c.SELECTION_PLURAL, selection("anchor", "m0")
    )
    if not wait_for(lambda: "anchor" in seen, 120, 0.005):
        raise SystemExit("the anchor's pod did not run within 120 s")
    latencies = timed_changes(custom, ns, n, "task", "m0", seen, 60)
    if len(latencies) < n:
        raise SystemExit(f"no Running pod for change {len(latencies)} within 60 s")
    return latencies


def converge(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespaces: list[str],
    total: int,
) -> tuple[float, float]:
    """Seconds until every selection has its pod and a status, and until every pod is bound."""
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
        mine = [s for s in items if s["metadata"]["namespace"] in namespaces]
        return len(mine) == len(jobs) and all((s.get("status") or {}).get("pod") for s in mine)

    def scheduled() -> bool:
        pods = core.list_pod_for_all_namespaces(label_selector=f"{c.LABEL_SELECTION}").items
        bound = [
            p
            for p in pods
            if p.metadata.namespace in namespaces
            and p.spec.node_name
            and not p.metadata.deletion_timestamp
        ]
        return len(bound) >= len(jobs)

    if not wait_for(converged, 300, 0.5):
        raise SystemExit("did not converge within 300 s")
    status_s = time.monotonic() - start
    if not wait_for(scheduled, 300, 0.5):
        pods = core.list_pod_for_all_namespaces(label_selector=c.LABEL_SELECTION).items
        pending = [p for p in pods if p.metadata.namespace in namespaces and not p.spec.node_name]
        said = [
            cond.message
            for cond in ((pending[0].status.conditions or []) if pending else [])
            if cond.type == "PodScheduled"
        ]
        names = {(p.metadata.namespace, p.metadata.name) for p in pods}
        items = custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.SELECTION_PLURAL)["items"]
        podless = [
            s["status"]
            for s in items
            if s["metadata"]["namespace"] in namespaces
            and (s["metadata"]["namespace"], s["status"].get("pod")) not in names
        ]
        raise SystemExit(
            f"{len(pending)} pods not scheduled within 300 s; one says: {said}; "
            f"{len(podless)} selections without their pod, one: {podless[:1]}"
        )
    return status_s, time.monotonic() - start


if __name__ == "__main__":
    sys.exit(main())
