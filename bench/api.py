"""Benchmark of the /api/models REST API: wrk against /status and /config.

For 10, 100 and 1,000 selections (a catalog holds at most 64 tasks, so 100
and 1,000 are several selections per task; each task's own selection is
reported loaded), at 1, 16 and 64 concurrent connections, it measures p50,
p99 and requests/s of:

- api:   `fovea-models api` itself (one uvicorn worker, cache-fed, bytes precomputed);
- bare:  a bare FastAPI route returning the very same bytes (the framework's limit);
- naive: the same response builders, but listing the cluster on every request.

and prints the ratios api/bare and api/naive, and each server's CPU time per
request (`us`), which other load on a shared machine disturbs far less than
req/s and latency do. Targets (2-core machine, one
worker): api >= 0.7 x bare req/s, api p99 <= 10 ms at 64 connections, and
the api/bare ratio flat from 10 to 1,000 selections.

    .venv/bin/python bench/api.py                      # a local cluster of its own
    .venv/bin/python bench/api.py --kubeconfig PATH    # an existing cluster
    .venv/bin/python bench/api.py --sizes 10 --duration 3

Needs `wrk` (apt-get install wrk). Numbers from a shared machine are noisy:
the ratios, measured back to back, are the figures to read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from fovea.kube import install_cluster_scoped

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import (
    PIN_SERVER,
    PYTHON,
    Child,
    bench_parser,
    cpu_seconds,
    free_port,
    local_cluster,
    numbered_catalog_spec,
    numbered_task,
    run_wrk,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("api", "bare", "naive")
ROUNDS = 5
# Every variant runs pinned to the server's CPU (PIN_SERVER), wrk on the others.
ENDPOINTS = ("status", "config")
GROUP, VERSION = "fovea.dev", "v1alpha1"


# --- the two reference servers (run as subprocesses of this script) --------------------


def serve_bare(port: int, body_dir: Path) -> None:
    """A FastAPI app whose routes return fixed bytes: the framework's own ceiling."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    config = (body_dir / "config.json").read_bytes()
    status = (body_dir / "status.json").read_bytes()
    app = FastAPI()

    @app.get("/api/models/config")
    async def get_config() -> Response:
        return Response(content=config, media_type="application/json")

    @app.get("/api/models/status")
    async def get_status() -> Response:
        return Response(content=status, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_naive(port: int, kubeconfig: str, namespace: str) -> None:
    """The same builders, fed by four list calls per request instead of a watch cache."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response
    from kubernetes import client

    from fovea.api import responses
    from fovea.api.state import build_state, parse_selection
    from fovea.kube import api_client

    api = api_client(kubeconfig)
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def raw(response: Any) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(response.data)
        return data

    def listed() -> Any:
        catalogs = raw(
            custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "modelcatalogs", _preload_content=False
            )
        )["items"]
        selections = raw(
            custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "modelselections", _preload_content=False
            )
        )["items"]
        nodes = raw(core.list_node(_preload_content=False))["items"]
        pods = raw(
            core.list_namespaced_pod(
                namespace,
                label_selector="app.kubernetes.io/component=model-server",
                _preload_content=False,
            )
        )["items"]
        parsed = {s.name: s for s in map(parse_selection, selections) if s is not None}
        state = build_state(
            namespace,
            "default",
            {c["metadata"]["name"]: c for c in catalogs},
            parsed,
            {n["metadata"]["name"]: n for n in nodes},
            {p["metadata"]["name"]: p for p in pods},
        )
        return state, responses.gpu_view(state)

    app = FastAPI()

    @app.get("/api/models/config")
    def get_config() -> Response:
        state, gpus = listed()
        body = responses.to_json(responses.config_body(state, gpus))
        return Response(content=body, media_type="application/json")

    @app.get("/api/models/status")
    def get_status() -> Response:
        state, gpus = listed()
        body = responses.to_json(responses.status_body(state, gpus))
        return Response(content=body, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the cluster's content --------------------------------------------------------------


def populate(kubeconfig: str, namespace: str, size: int) -> int:
    """`size` selections over at most MAX_TASKS tasks; each task's own one reported Ready.

    A catalog holds at most MAX_TASKS tasks (the CRD's bound), so beyond that
    the extra selections are further ModelSelections of the same tasks under
    other names: the cache holds and watches them all, while /config and
    /status list each task once. Returns the number of tasks.
    """
    from kubernetes import client

    from fovea.domain.resources import MAX_TASKS, selection_name
    from fovea.kube import api_client

    tasks = min(size, MAX_TASKS)

    api = api_client(kubeconfig)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "modelcatalogs",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelCatalog",
            "metadata": {"name": "default"},
            "spec": numbered_catalog_spec(tasks),
        },
    )

    def one(n: int) -> None:
        i = n % tasks
        own = selection_name(numbered_task(i))
        name = own if n < tasks else f"{own}-{n}"
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "modelselections",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelSelection",
                "metadata": {"name": name},
                "spec": {"task": numbered_task(i), "model": "small"},
            },
        )
        # What the operator and the model pod report once loaded (no pods run here).
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "modelselections",
            name,
            {
                "status": {
                    "phase": "Ready",
                    "node": "fovea-gpu-0",
                    "gpuIndex": i % 2,
                    "device": "cuda:0",
                    "runtime": {
                        "state": "Ready",
                        "modelId": f"bench/small-{i}",
                        "device": "cuda:0",
                        "simulatedGpu": True,
                        "measuredMemoryGb": 0.25,
                        "loadTimeSeconds": 1.0,
                    },
                }
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(size)))
    return tasks


# --- processes and wrk ------------------------------------------------------------------


def wait_http(url: str, ok: Any, timeout: float = 120.0) -> None:
    if not wait_for(lambda: ok(httpx.get(url, timeout=30)), timeout, 0.2):
        raise RuntimeError(f"{url} did not become ready")


@dataclass(frozen=True)
class Result:
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int
    cpu_us: float  # server CPU time per request: robust to other load on the machine


def median(results: list[Result]) -> Result:
    """The round with the median req/s (its latencies come with it), errors summed."""
    ordered = sorted(results, key=lambda r: r.rps)
    middle = ordered[len(ordered) // 2]
    cpu = sorted(r.cpu_us for r in results)[len(results) // 2]
    errors = sum(r.errors for r in results)
    return Result(middle.p50_ms, middle.p99_ms, middle.rps, errors, cpu)


def settle(pid: int, timeout_s: float = 60.0) -> None:
    """Wait until a server has worked off its backlog (the naive one queues requests)."""
    deadline = time.monotonic() + timeout_s
    proc = psutil.Process(pid)
    while time.monotonic() < deadline and proc.cpu_percent(interval=0.5) > 5.0:
        pass


def wrk(url: str, connections: int, duration: int, pid: int) -> Result:
    """One wrk run against `url`, served by process `pid`."""
    cpu_before = cpu_seconds(pid)
    run = run_wrk(url, connections, duration)
    cpu_us = (cpu_seconds(pid) - cpu_before) / max(run.requests, 1) * 1e6
    return Result(run.p50_ms, run.p99_ms, run.rps, run.errors, cpu_us)


# --- the run ----------------------------------------------------------------------------


def bench_size(
    kubeconfig: str, size: int, concurrency: list[int], duration: int, work: Path
) -> dict[tuple[str, int, str], Result]:
    namespace = f"bench-api-{size}-{int(time.time())}"
    started = time.monotonic()
    tasks = populate(kubeconfig, namespace, size)
    print(
        f"\n{size} selections of {tasks} tasks created in {time.monotonic() - started:.1f}s",
        flush=True,
    )
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    ports = {v: free_port() for v in VARIANTS}
    me = [*PIN_SERVER, sys.executable, str(Path(__file__).resolve())]
    body_dir = work / f"bodies-{size}"
    body_dir.mkdir()
    results: dict[tuple[str, int, str], Result] = {}
    api_args = [
        *PIN_SERVER,
        *PYTHON,
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(ports["api"]),
        "--namespace",
        namespace,
        "--log-level",
        "warning",
    ]
    with Child(api_args, env, work / f"api-{size}.log") as api_proc:
        api = f"http://127.0.0.1:{ports['api']}"
        wait_http(
            f"{api}/api/models/status",
            lambda r: r.status_code == 200 and len(r.json()["loaded_models"]) == tasks,
        )
        for endpoint in ENDPOINTS:
            (body_dir / f"{endpoint}.json").write_bytes(
                httpx.get(f"{api}/api/models/{endpoint}").content
            )
        sizes = {e: len((body_dir / f"{e}.json").read_bytes()) for e in ENDPOINTS}
        print(f"  bodies: /status {sizes['status']:,} B, /config {sizes['config']:,} B")
        bare_args = [*me, "serve-bare", "--port", str(ports["bare"]), "--bodies", str(body_dir)]
        naive_args = [
            *me,
            "serve-naive",
            "--port",
            str(ports["naive"]),
            "--namespace",
            namespace,
            "--kubeconfig",
            kubeconfig,
        ]
        with (
            Child(bare_args, env, work / f"bare-{size}.log") as bare_proc,
            Child(naive_args, env, work / f"naive-{size}.log") as naive_proc,
        ):
            pids = {"api": api_proc.pid, "bare": bare_proc.pid, "naive": naive_proc.pid}
            urls = {v: f"http://127.0.0.1:{ports[v]}/api/models" for v in VARIANTS}
            for variant in ("bare", "naive"):
                wait_http(f"{urls[variant]}/status", lambda r: r.status_code == 200)
            for endpoint in ENDPOINTS:
                same = httpx.get(f"{urls['bare']}/{endpoint}").content
                assert same == httpx.get(f"{urls['api']}/{endpoint}").content
                for variant in VARIANTS:
                    wrk(f"{urls[variant]}/{endpoint}", 4, 1, pids[variant])  # warm-up
                settle(pids["naive"])
                for conns in concurrency:
                    # Interleaved rounds, median per variant: bursts of load from other
                    # processes on a shared machine then hit every variant alike.
                    rounds: dict[str, list[Result]] = {v: [] for v in VARIANTS}
                    for _ in range(ROUNDS):
                        for variant in VARIANTS:
                            url = f"{urls[variant]}/{endpoint}"
                            rounds[variant].append(wrk(url, conns, duration, pids[variant]))
                        settle(pids["naive"])
                    for variant in VARIANTS:
                        results[(endpoint, conns, variant)] = median(rounds[variant])
                    report_line(size, endpoint, conns, results)
    return results


def report_line(
    size: int, endpoint: str, conns: int, results: dict[tuple[str, int, str], Result]
) -> None:
    api, bare, naive = (results[(endpoint, conns, v)] for v in VARIANTS)
    errors = ", ".join(
        f"{name} {r.errors}"
        for name, r in (("api", api), ("bare", bare), ("naive", naive))
        if r.errors
    )
    print(
        f"  {size:>5} /{endpoint:<6} c={conns:<3} "
        + " | ".join(
            f"{name} p50 {r.p50_ms:7.2f} p99 {r.p99_ms:7.2f} ms {r.rps:6.0f} r/s {r.cpu_us:6.0f} us"
            for name, r in (("api", api), ("bare", bare), ("naive", naive))
        )
        + f" | api/bare r/s {api.rps / bare.rps:4.2f} cpu {bare.cpu_us / api.cpu_us:4.2f}"
        + (
            f" | api/naive r/s {api.rps / naive.rps:.0f}x"
            if naive.rps >= 1
            else " | naive: no answer within wrk's 2 s timeout"
        )
        + (f"  (errors: {errors})" if errors else ""),
        flush=True,
    )


def summary(all_results: dict[int, dict[tuple[str, int, str], Result]], top: int) -> bool:
    ok = True
    print("\nTargets")
    for size, results in sorted(all_results.items()):
        for endpoint in ENDPOINTS:
            for (e, conns, variant), r in sorted(results.items()):
                if e != endpoint or variant != "api":
                    continue
                bare = results[(e, conns, "bare")]
                ratio = r.rps / bare.rps
                good_ratio = ratio >= 0.7
                good_p99 = conns != top or r.p99_ms <= 10.0
                ok &= good_ratio and good_p99 and r.errors == 0
                print(
                    f"  {size:>5} /{endpoint:<6} c={conns:<3} api/bare r/s {ratio:4.2f} "
                    f"{'ok' if good_ratio else 'BELOW 0.7'} "
                    f"(CPU per request: bare/api {bare.cpu_us / r.cpu_us:4.2f})"
                    + (
                        f", p99 {r.p99_ms:.2f} ms {'ok' if good_p99 else 'ABOVE 10 ms'}"
                        f" (bare route: {bare.p99_ms:.2f} ms)"
                        if conns == top
                        else ""
                    )
                )
    sizes = sorted(all_results)
    if len(sizes) > 1:
        print("\nFlatness: api/bare at the largest vs the smallest size")
        for endpoint in ENDPOINTS:
            for conns in sorted({k[1] for k in all_results[sizes[0]]}):

                def ratio(size: int, e: str = endpoint, c: int = conns) -> float:
                    res = all_results[size]
                    return res[(e, c, "api")].rps / res[(e, c, "bare")].rps

                print(
                    f"  /{endpoint:<6} c={conns:<3} {ratio(sizes[0]):.2f} -> {ratio(sizes[-1]):.2f}"
                )
    print("\nall targets met" if ok else "\nsome targets missed")
    return ok


def run(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("bench/api.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    concurrency = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        work = Path(tmp)
        with ExitStack() as own:
            kubeconfig = args.kubeconfig
            if kubeconfig is None:
                cluster = own.enter_context(local_cluster(work / "cluster", "2x24GiB,1x80GiB"))
                kubeconfig = str(cluster.kubeconfig)
            install_cluster_scoped(kubeconfig)
            print(
                f"wrk, {args.duration:g}s per run; one uvicorn worker per server; "
                f"{os.cpu_count()} CPUs shared by server, wrk and the API server"
            )
            results = {
                size: bench_size(kubeconfig, size, concurrency, args.duration, work)
                for size in sizes
            }
    return 0 if summary(results, max(concurrency)) else 1


def main() -> int:
    parser = bench_parser(__doc__)
    sub = parser.add_subparsers(dest="mode")
    bare = sub.add_parser("serve-bare")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--bodies", type=Path, required=True)
    naive = sub.add_parser("serve-naive")
    naive.add_argument("--port", type=int, required=True)
    naive.add_argument("--namespace", required=True)
    naive.add_argument("--kubeconfig", required=True)
    parser.add_argument("--kubeconfig", help="an existing cluster (default: start a local one)")
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    args = parser.parse_args()
    if args.mode == "serve-bare":
        serve_bare(args.port, args.bodies)
        return 0
    if args.mode == "serve-naive":
        serve_naive(args.port, args.kubeconfig, args.namespace)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
