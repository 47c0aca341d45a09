"""The control plane at size: 1,000 then 10,000 selections, device plugin and DRA, in one run.

Per sharing mode, on a fresh local cluster (its own simulated GPU node
cordoned), this registers hollow GPU nodes (Node objects labelled
fovea.dev/hollow=true, one 80 GiB GPU with 16 time-slice replicas each, and
for DRA their ResourceSlices, their Leases renewed as a kubelet does; no
agent runs their pods, so a pod is bound, never started: what is measured is
the operator, the scheduler and the API, not model loading), starts the
operator and the API (cluster-wide), and for each size in turn (100
selections per namespace, one GPU per 10 selections; the larger size adds to
the smaller one) prints:

1. the time from the first create until every selection has a status naming
   its pod, and until every pod is bound to a node (DRA: its claim allocated);
2. the operator's requests to the API server per selection added (from its
   /metrics: fovea_operator_api_requests_total), by verb;
3. the operator's RSS at size and its CPU seconds for the phase;
4. change -> pod bound p50/p95 at size (a new selection each time, deleted
   once its pod is bound);
5. the API's GET /api/models/status p99 and what-if (POST /validate with a
   task/model pair) p50 at size, sequential requests.

A size that does not converge within --timeout prints what it reached (how
many statuses, how many bound pods) and why, and the run goes on to the next
mode. Usage:

    .venv/bin/python bench/scale.py [--sizes 1000,10000] [--modes timeSliced,dra]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
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
    free_port,
    local_cluster,
    percentile,
    renew_node_leases,
    selection_body,
    stack_env,
    timed_changes,
    wait_for,
)

PER_NAMESPACE = 100
SELECTIONS_PER_GPU = 10
MODES = ("timeSliced", "dra")


def catalog() -> dict[str, Any]:
    opts = {
        f"m{i}": {"modelId": f"bench-{i}", "framework": "pytorch", "vramGb": 4.0} for i in range(2)
    }
    return catalog_body({"tasks": {"task": {"options": opts}}})


def selection(name: str, model: str = "m0") -> dict[str, Any]:
    return selection_body(name, "task", model)


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per size")
    parser.add_argument("--verbose-operator", action="store_true", help="its log says more")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = sorted(int(s) for s in args.sizes.split(","))
    figures: dict[tuple[str, int], dict[str, float]] = {}
    for mode in args.modes.split(","):
        figures.update(run_mode(mode, sizes, args))
    print("\n=== summary (seconds, MiB)")
    for (mode, size), f in sorted(figures.items()):
        line = ", ".join(f"{k} {v:.3g}" for k, v in f.items())
        print(f"{mode} {size}: {line}")
    for size in sizes:
        base, dra_ = figures.get(("timeSliced", size)), figures.get(("dra", size))
        if base and dra_ and base.get("status_s") and dra_.get("status_s"):
            print(f"DRA / device plugin at {size}: {dra_['status_s'] / base['status_s']:.2f}x")
    return 0


class Operator(Child):
    """The operator process (cluster-wide), started at once: its /metrics, RSS and CPU."""

    def __init__(self, env: dict[str, str], log: Path, verbose: bool = False) -> None:
        self.port = free_port()
        argv = [*PYTHON, "operator", *(["--verbose"] if verbose else [])]
        env = {**env, "FOVEA_OPERATOR_METRICS_PORT": str(self.port)}
        super().__init__(argv, env, log, stop_timeout_s=30)
        self.start()
        self.ps = psutil.Process(self.pid)

    def requests(self) -> Counter[tuple[str, str]]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        pattern = r'fovea_operator_api_requests_total\{resource="([^"]+)",verb="([^"]+)"\} (\S+)'
        return Counter({(v, r): int(float(n)) for r, v, n in re.findall(pattern, text)})

    def rss_mib(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)


def run_mode(
    mode: str, sizes: list[int], args: argparse.Namespace
) -> dict[tuple[str, int], dict[str, float]]:
    print(f"\n--- sharing mode {mode}", flush=True)
    state = Path(tempfile.mkdtemp(prefix=f"fovea-bench-scale-{mode}-"))
    with local_cluster(state, "1x80GiB") as cluster:
        return measure_mode(cluster, state, mode, sizes, args)


def measure_mode(
    cluster: LocalCluster,
    state: Path,
    mode: str,
    sizes: list[int],
    args: argparse.Namespace,
) -> dict[tuple[str, int], dict[str, float]]:
    out: dict[tuple[str, int], dict[str, float]] = {}
    operator: Operator | None = None
    api_child: Child | None = None
    done = threading.Event()
    try:
        kubeconfig, api, core, custom = cluster_clients(cluster)
        api.configuration.connection_pool_maxsize = 32
        core.patch_node(cluster.nodes[0].name, {"spec": {"unschedulable": True}})
        env = stack_env(
            kubeconfig,
            "default",
            FOVEA_OPERATOR_SHARING_MODE=mode,
            FOVEA_OPERATOR_LEASE_SECONDS="15",  # one replica: no standby to hand over to
        )
        operator = Operator(env, state / "operator.log", args.verbose_operator)
        with httpx.Client(timeout=5) as http:
            metrics = f"http://127.0.0.1:{operator.port}/metrics"
            if not wait_for(lambda: http.get(metrics).status_code == 200, 120, 0.2):
                raise SystemExit(f"the operator did not start: see {state / 'operator.log'}")
        api_port = free_port()
        api_args = ["api", "--host", "127.0.0.1", "--port", str(api_port)]
        api_args += ["--namespace", "scale-000", "--log-level", "warning"]
        api_child = Child([*PYTHON, *api_args], env, state / "api.log", stop_timeout_s=30)
        api_child.start()
        nodes: list[str] = []
        renew = threading.Thread(target=renew_node_leases, args=(api, nodes, done), daemon=True)
        renew.start()
        namespaces: list[str] = []
        have = 0
        for size in sizes:
            figures = grow(core, custom, api, nodes, namespaces, have, size, operator, args)
            if figures.get("converged"):
                figures.update(changes_at_size(core, custom, args.changes, namespaces[0]))
                figures.update(api_at_size(api_port))
            out[(mode, size)] = figures
            if not figures.get("converged"):
                break
            have = size
    finally:
        done.set()
        if operator is not None:
            operator.stop()
        if api_child is not None:
            api_child.stop()
    return out


def grow(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    api: client.ApiClient,
    nodes: list[str],
    namespaces: list[str],
    have: int,
    size: int,
    operator: Operator,
    args: argparse.Namespace,
) -> dict[str, float]:
    """Add hollow nodes and selections from `have` to `size`; time until all converge."""
    want_nodes = size // SELECTIONS_PER_GPU
    new_nodes = [f"hollow-{i:04d}" for i in range(len(nodes), want_nodes)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: add_hollow_gpu_node(core, custom, n), new_nodes))
    nodes.extend(new_nodes)
    new_ns = [f"scale-{i:03d}" for i in range(len(namespaces), size // PER_NAMESPACE)]
    for ns in new_ns:
        core.create_namespace({"metadata": {"name": ns}})
        custom.create_namespaced_custom_object(c.GROUP, c.VERSION, ns, c.CATALOG_PLURAL, catalog())
    namespaces.extend(new_ns)
    jobs = [(ns, f"sel-{j:03d}") for ns in namespaces for j in range(PER_NAMESPACE)][have:size]
    print(
        f"{size} selections: {len(namespaces)} namespaces, {len(nodes)} hollow GPU nodes; "
        f"adding {len(jobs)}",
        flush=True,
    )
    time.sleep(2)  # the operator's cache sees the nodes (their watch events) before the flood
    calls_before, cpu_before = operator.requests(), operator.cpu_s()
    start = time.monotonic()

    def create(job: tuple[str, str]) -> None:
        ns, name = job
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, ns, c.SELECTION_PLURAL, selection(name)
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, jobs))
    created_s = time.monotonic() - start
    print(f"  created in {created_s:.1f} s", flush=True)
    figures: dict[str, float] = {"selections": size, "created_s": created_s}
    status_s = bound_s = None
    deadline = start + args.timeout
    with_status = bound = 0
    while time.monotonic() < deadline:
        with_status = count_statuses(custom, namespaces)
        if status_s is None and with_status >= size:
            status_s = time.monotonic() - start
            print(f"  every status written: {status_s:.1f} s", flush=True)
        bound = count_bound(core)
        if bound_s is None and bound >= size:
            bound_s = time.monotonic() - start
            print(f"  every pod bound: {bound_s:.1f} s", flush=True)
        if status_s is not None and bound_s is not None:
            break
        time.sleep(max(1.0, size / 2000))  # each count is a list of every selection
    calls = operator.requests() - calls_before
    added = len(jobs)
    figures["rss_mib"] = operator.rss_mib()
    figures["operator_cpu_s"] = operator.cpu_s() - cpu_before
    figures["calls_per_selection"] = sum(calls.values()) / added
    by_verb: Counter[str] = Counter()
    for (verb, _), n in calls.items():
        by_verb[verb] += n
    print(
        f"  operator: {figures['calls_per_selection']:.2f} requests per selection added "
        f"({', '.join(f'{v} {n / added:.2f}' for v, n in sorted(by_verb.items()))}); "
        f"RSS {figures['rss_mib']:.0f} MiB; CPU {figures['operator_cpu_s']:.1f} s",
        flush=True,
    )
    if status_s is None or bound_s is None:
        print(
            f"  NOT converged within {args.timeout:.0f} s: {with_status} of {size} statuses "
            f"name a pod, {bound} pods bound; {why_not(core, custom, namespaces)}",
            flush=True,
        )
        figures["statuses_reached"], figures["bound_reached"] = with_status, bound
        return figures
    figures.update(status_s=status_s, bound_s=bound_s, converged=1.0)
    return figures


def count_statuses(custom: client.CustomObjectsApi, namespaces: list[str]) -> int:
    """Selections whose status names their pod (one cluster-wide list, paginated)."""
    n, token = 0, None
    while True:
        page = custom.list_cluster_custom_object(
            c.GROUP, c.VERSION, c.SELECTION_PLURAL, limit=2000, _continue=token
        )
        n += sum(1 for s in page["items"] if (s.get("status") or {}).get("pod"))
        token = page["metadata"].get("continue")
        if not token:
            return n


def count_bound(core: client.CoreV1Api) -> int:
    """Model pods bound to a hollow node (a field selector: the server counts)."""
    n, token = 0, None
    while True:
        page = core.list_pod_for_all_namespaces(
            label_selector=f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}",
            field_selector="spec.nodeName!=",
            limit=2000,
            _continue=token,
            _preload_content=False,
        )
        body = json.loads(page.data)
        n += len(body["items"])
        token = body["metadata"].get("continue")
        if not token:
            return n


def why_not(core: client.CoreV1Api, custom: client.CustomObjectsApi, namespaces: list[str]) -> str:
    """One unbound pod's scheduler message, or one selection's status message."""
    pods = core.list_pod_for_all_namespaces(
        label_selector=f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}",
        field_selector="spec.nodeName=",
        limit=1,
    ).items
    if pods:
        said = [x.message for x in pods[0].status.conditions or [] if x.type == "PodScheduled"]
        return f"pod {pods[0].metadata.name} unbound: {said}"
    items = custom.list_namespaced_custom_object(
        c.GROUP, c.VERSION, namespaces[-1], c.SELECTION_PLURAL
    )["items"]
    waiting = [s for s in items if not (s.get("status") or {}).get("pod")]
    if waiting:
        return f"selection {waiting[0]['metadata']['name']}: {waiting[0].get('status')}"
    return "the last namespace is complete"


def changes_at_size(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, n: int, ns: str
) -> dict[str, float]:
    """change -> pod bound: a new selection each time, deleted once its pod is bound."""
    seen: dict[str, float] = {}
    stream = watch.Watch()
    ready, stopped = threading.Event(), threading.Event()

    def watch_pods() -> None:
        ready.set()
        while not stopped.is_set():  # a watch the server breaks starts again (its list first)
            try:
                for event in stream.stream(core.list_namespaced_pod, ns, timeout_seconds=900):
                    if not event:  # the stream was stopped
                        return
                    pod = event["object"]
                    if event["type"] != "DELETED" and pod.spec.node_name:
                        owner = (pod.metadata.labels or {}).get(c.LABEL_SELECTION)
                        if owner:
                            seen.setdefault(owner, time.monotonic())
            except Exception as exc:
                if not stopped.is_set():
                    print(f"  (pod watch broken: {exc!r}; watching again)", flush=True)

    threading.Thread(target=watch_pods, daemon=True).start()
    ready.wait()
    time.sleep(1.0)
    latencies = timed_changes(custom, ns, n, "task", "m1", seen, 120)
    if len(latencies) < n:
        print(f"  change {len(latencies)}: no bound pod within 120 s", flush=True)
    stopped.set()
    stream.stop()
    if not latencies:
        return {}
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    print(
        f"  change -> pod bound at size ({len(latencies)} changes): "
        f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
        flush=True,
    )
    return {"change_p50_s": p50, "change_p95_s": p95}


def api_at_size(port: int) -> dict[str, float]:
    """GET /status p99 over 200 requests and what-if p50 over 20, one at a time."""
    base = f"http://127.0.0.1:{port}/api/models"
    with httpx.Client(timeout=60) as http:
        if not wait_for(lambda: http.get(f"{base}/status").status_code == 200, 300, 1.0):
            print("  the API did not answer /status within 300 s", flush=True)
            return {}
        status = [_timed(http.get, f"{base}/status") for _ in range(200)]
        params = {"task_type": "task", "model_name": "m1"}
        what_if = [_timed(http.post, f"{base}/validate", params=params) for _ in range(20)]
        size = len(http.get(f"{base}/status").content)
    figures = {
        "status_p99_s": percentile(status, 0.99),
        "what_if_p50_s": statistics.median(what_if),
    }
    print(
        f"  API: /status p99 {figures['status_p99_s'] * 1000:.1f} ms ({size:,} B), "
        f"what-if p50 {figures['what_if_p50_s'] * 1000:.0f} ms",
        flush=True,
    )
    return figures


def _timed(call: Callable[..., httpx.Response], url: str, **kwargs: Any) -> float:
    start = time.perf_counter()
    response = call(url, **kwargs)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{url}: HTTP {response.status_code} {response.text[:300]}")
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
