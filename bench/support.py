"""What the benches share, so that each bench file keeps only what it measures.

A bench imports it by its folder (so `python -P bench/x.py` finds it too):

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from support import Stack, local_cluster, percentile, wait_for

- the local cluster of a run (`local_cluster`), the operator and the API as
  subprocesses with their logs in the run's folder (`Child`, `Stack`), and the
  lines of a log that ended in a traceback (`print_tracebacks`);
- the objects a bench creates: a catalog, a selection, a model option a CPU
  loads in a moment (`random_weights_option`), a catalog of many numbered tasks,
  hollow GPU nodes that no agent runs and whose Leases are renewed as a kubelet
  does, model weights served over HTTP on loopback;
- load: wrk's runs read into figures (`run_wrk`), the server and the load
  generator pinned to different CPUs;
- waiting (`wait_for`), percentiles, CPU time, a free port, progress lines on
  stderr, and the argument parser with the bench's docstring as its help.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from fovea.kube import api_client, install_cluster_scoped
from fovea.localcluster.binaries import ensure_binaries, put_kubectl_on_path
from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.dra import resource_slice
from fovea.localcluster.nodes import GpuSet, NodePlan
from fovea.localcluster.rest import ApiError, Rest

# `fovea-models` as a subprocess of this interpreter; -P: the working directory is not
# put on its sys.path (the repository's operator/ would hide the standard `operator`).
PYTHON = [sys.executable, "-P", "-m", "fovea.cli"]
# What a failed check inside `wait_for` may raise while the thing waited for is coming.
WAIT_ERRORS = (httpx.HTTPError, ApiException, HTTPError, ApiError, OSError)
# A server on the first CPU, the load generator on the others (when there are two or
# more), so that the load does not steal the server's core.
CPUS = sorted(os.sched_getaffinity(0))
PIN_SERVER = ["taskset", "-c", str(CPUS[0])] if len(CPUS) > 1 and shutil.which("taskset") else []
PIN_LOADGEN = ["taskset", "-c", ",".join(map(str, CPUS[1:]))] if PIN_SERVER else []


# --- command line and output ---------------------------------------------------------


def bench_parser(doc: str | None, *, summary: bool = False) -> argparse.ArgumentParser:
    """The bench's parser: its docstring (only the first paragraph with `summary`) as help."""
    text = doc or ""
    if summary:
        return argparse.ArgumentParser(description=text.split("\n\n")[0])
    return argparse.ArgumentParser(
        description=text, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def progress(message: str) -> None:
    """A progress line on stderr (the figures go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def print_tracebacks(paths: Sequence[Path]) -> None:
    """The last lines of each log that holds a traceback, after the figures."""
    for path in paths:
        if path.exists() and "Traceback" in (text := path.read_text(errors="replace")):
            tail = "\n".join(text.splitlines()[-15:])
            print(f"--- last lines of {path.name} (it logged a traceback):\n{tail}")


# --- figures -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The value at rank int(q * n) of the sorted values (nan for none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def percentile_rounded(values: Sequence[float], q: float) -> float:
    """The value at rank round(q * (n - 1)) of the sorted values (nan for none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (nan when it cannot be read)."""
    if pid is None:
        return math.nan
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return math.nan
    return float(times.user + times.system)


# --- load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers and socket errors


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(url: str, connections: int, duration_s: float, script: Path | None = None) -> WrkRun:
    """One wrk run against `url` on the load generator's CPUs (a Lua `script`: its requests)."""
    threads = 1 if connections == 1 else 2
    argv = [*PIN_LOADGEN, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s"]
    argv += ["--latency", *(["-s", str(script)] if script else []), url]
    return read_wrk(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def read_wrk(out: str) -> WrkRun:
    """The figures of wrk's `--latency` output."""
    percent = dict(re.findall(r"^\s*(50|99)%\s+([\d.]+(?:us|ms|s|m))\s*$", out, re.MULTILINE))
    if set(percent) != {"50", "99"}:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = 0
    if non2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        failed += int(non2xx.group(1))
    if sockets := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        failed += sum(int(x) for x in sockets.groups())
    return WrkRun(rps, _ms(percent["50"]), _ms(percent["99"]), requests, failed)


# --- waiting -----------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], timeout_s: float, period_s: float = 0.1) -> Any:
    """`check()`'s first truthy value within `timeout_s`, else None.

    A check that raises one of WAIT_ERRORS (the server not up yet, the object not
    there yet) counts as not yet.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except WAIT_ERRORS:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(period_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- processes ---------------------------------------------------------------------------


@contextmanager
def local_cluster(state_dir: Path, gpus: str = "auto") -> Iterator[LocalCluster]:
    """A local cluster of the bench's own (kubectl on PATH), stopped on the way out."""
    put_kubectl_on_path(ensure_binaries())
    cluster = LocalCluster(state_dir, gpus=gpus, log=lambda message: None)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def stack_env(kubeconfig: str, lease_namespace: str, **settings: str) -> dict[str, str]:
    """The environment of the operator and the API: this one, the cluster, the settings."""
    return {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "PYTHONUNBUFFERED": "1",
        "FOVEA_OPERATOR_LEASE_NAMESPACE": lease_namespace,
        **settings,
    }


class Child:
    """A subprocess (the operator, the API) with its output appended to a log file."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log: Path, stop_timeout_s: float = 20
    ) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.stop_timeout_s = stop_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start it (again), with `env` over its environment."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
            )

    def __enter__(self) -> Child:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self, wait: bool = True) -> None:
        """SIGKILL, as a crash; `wait=False` returns at once (reap it with `stop`)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            if wait:
                self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout_s`."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


def cluster_clients(
    cluster: LocalCluster,
) -> tuple[str, client.ApiClient, client.CoreV1Api, client.CustomObjectsApi]:
    """The CRDs installed on `cluster`; its kubeconfig and clients of its API server."""
    kubeconfig = str(cluster.kubeconfig)
    install_cluster_scoped(kubeconfig)
    api = api_client(kubeconfig)
    return kubeconfig, api, client.CoreV1Api(api), client.CustomObjectsApi(api)


def prepare_namespace(kubeconfig: str, core: client.CoreV1Api, namespace: str) -> None:
    """The CRDs installed and `namespace` created, with its default service account."""
    install_cluster_scoped(kubeconfig)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    wait_for(lambda: core.read_namespaced_service_account("default", namespace), 30)


def create_namespace(rest: Rest, name: str) -> None:
    """`name` created through `rest`; returns once its default service account exists
    (the API server refuses pods until then)."""
    rest.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    path = f"/api/v1/namespaces/{name}/serviceaccounts/default"
    if not wait_for(lambda: rest.get(path) is not None, 60, 0.05):
        raise SystemExit(f"namespace {name}: no default service account within 60 s")


class Stack:
    """The operator and the API of one namespace as subprocesses on a bench's cluster.

    Logs go to `workdir` (operator.log, api.log); `http` is a client of the API.
    """

    def __init__(
        self,
        cluster: LocalCluster,
        workdir: Path,
        namespace: str,
        *,
        settings: dict[str, str] | None = None,
        api_log_level: str | None = "warning",
        api_prefix: Sequence[str] = (),
        http_timeout_s: float = 180,
        stop_timeout_s: float = 20,
    ) -> None:
        self.cluster, self.workdir, self.namespace = cluster, workdir, namespace
        self.kubeconfig = str(cluster.kubeconfig)
        self.api_client = api_client(self.kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        env = stack_env(self.kubeconfig, namespace, **(settings or {}))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.operator = Child(
            [*PYTHON, "operator", "-n", namespace], env, workdir / "operator.log", stop_timeout_s
        )
        api_argv = [
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--namespace",
            namespace,
        ]
        if api_log_level is not None:
            api_argv += ["--log-level", api_log_level]
        # A prefix such as taskset execs the API, so the Popen's pid is the API's own.
        self.api = Child(
            [*api_prefix, *PYTHON, *api_argv], env, workdir / "api.log", stop_timeout_s
        )
        self.http = httpx.Client(base_url=self.url, timeout=http_timeout_s)

    def prepare(self) -> None:
        prepare_namespace(self.kubeconfig, self.core, self.namespace)

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, plural, body
        )

    def start(self, ready_timeout_s: float = 60) -> None:
        """The operator and the API started; returns once the API is ready."""
        self.operator.start()
        self.api.start()
        if not wait_for(lambda: self.http.get("/readyz").status_code == 200, ready_timeout_s):
            raise SystemExit(f"the API did not become ready; see {self.api.log}")

    def stop(self) -> None:
        self.http.close()
        self.api.stop()
        self.operator.stop()

    def select(
        self, task: str, model: str, *, wait_s: float | None = None, timeout_s: float | None = None
    ) -> int:
        """`POST /api/models/select`: its status code (0 when it did not answer)."""
        params: dict[str, Any] = {"task_type": task, "model_name": model}
        if wait_s is not None:
            params["wait"] = wait_s
        try:
            if timeout_s is None:
                return self.http.post("/api/models/select", params=params).status_code
            return self.http.post(
                "/api/models/select", params=params, timeout=timeout_s
            ).status_code
        except httpx.HTTPError:
            return 0

    def live_pods(self) -> list[Any]:
        """The namespace's model pods not being deleted."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}"
        ).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]

    def selection(self, task: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.SELECTION_PLURAL, selection_name(task)
        )
        return obj

    def status(self, task: str) -> dict[str, Any]:
        return dict(self.selection(task).get("status") or {})


# --- the objects a bench creates ---------------------------------------------------------


def random_weights_option(
    model_id: str = "mlp-tiny", architecture: str = "mlp-tiny", vram_gb: float = 1.0
) -> dict[str, Any]:
    """A catalog option a CPU loads in a moment: a small torch model on random weights."""
    return {
        "modelId": model_id,
        "framework": "pytorch",
        "vramGb": vram_gb,
        "architecture": architecture,
        "allowRandomWeights": True,
    }


def catalog_body(spec: dict[str, Any]) -> dict[str, Any]:
    """The namespace's ModelCatalog (named `default`) with `spec`."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CATALOG_KIND,
        "metadata": {"name": "default"},
        "spec": spec,
    }


def selection_body(name: str, task: str, model: str) -> dict[str, Any]:
    """A ModelSelection named `name` of `model` for `task`."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.SELECTION_KIND,
        "metadata": {"name": name},
        "spec": {"task": task, "model": model},
    }


def numbered_task(i: int) -> str:
    return f"task_{i:02d}"


def numbered_catalog_spec(tasks: int) -> dict[str, Any]:
    """A catalog's spec of `tasks` numbered tasks, each with a small and a large option."""
    option = {"framework": "pytorch", "speed": "fast", "description": "bench model"}
    return {
        "tasks": {
            numbered_task(i): {
                "options": {
                    "small": {**option, "modelId": f"bench/small-{i}", "vramMb": 256},
                    "large": {**option, "modelId": f"bench/large-{i}", "vramGb": 2},
                }
            }
            for i in range(tasks)
        },
        "inference": {"offloadThreshold": 0.8},
    }


# --- model weights on loopback -------------------------------------------------------------


def mlp_weights(folder: Path, names: Sequence[str], size_mb: int) -> tuple[str, list[Path]]:
    """One `mlp:64,H,64` safetensors file per name in `folder`, each about `size_mb` MB
    of float32 weights, the n-th drawn with seed n: (architecture, files)."""
    import torch
    from safetensors.torch import save_file

    from fovea.model_pod.adapters.adapter_torch import architecture

    hidden = max(16, size_mb * 1_000_000 // (4 * 2 * 64))
    arch = f"mlp:64,{hidden},64"
    paths = []
    for n, name in enumerate(names):
        torch.manual_seed(n)
        module = architecture(arch).build()
        path = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
        paths.append(path)
    return arch, paths


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def served_folder(folder: Path) -> Iterator[str]:
    """`folder`'s files over HTTP on loopback while inside: the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def timed_changes(
    custom: client.CustomObjectsApi,
    namespace: str,
    count: int,
    task: str,
    model: str,
    seen: dict[str, float],
    timeout_s: float,
) -> list[float]:
    """`count` changes, one at a time: each a new selection `change-NNN` of `model`, timed
    from its create to the moment `seen` (stamped by the caller's pod watch) names it,
    then deleted. Stops at the first change not seen within `timeout_s`, so fewer
    latencies than `count` name the change that was not."""
    latencies: list[float] = []
    for i in range(count):
        name = f"change-{i:03d}"
        start = time.monotonic()
        body = selection_body(name, task, model)
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.SELECTION_PLURAL, body
        )
        if not wait_for(lambda name=name: name in seen, timeout_s, 0.005):
            break
        latencies.append(seen[name] - start)
        custom.delete_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.SELECTION_PLURAL, name
        )
    return latencies


# --- hollow GPU nodes: Node objects no agent runs ------------------------------------------

HOLLOW_LABEL = f"{c.GROUP}/hollow"


def hollow_gpu_node(name: str, product: str, reason: str) -> dict[str, Any]:
    """A Node with one 80 GiB GPU (16 time-slice replicas) that no kubelet runs: its pods
    are bound, never started; Ready while its Lease is renewed (`renew_node_leases`)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    gpu = {"cpu": "64", "memory": "512Gi", "pods": "110", c.RESOURCE_GPU: "16"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                c.NODE_LABEL_GPU_MEMORY_MIB: str(80 * 1024),
                c.NODE_LABEL_GPU_COUNT: "1",
                c.NODE_LABEL_GPU_REPLICAS: "16",
                c.NODE_LABEL_GPU_PRODUCT: product,
                c.NODE_LABEL_SIMULATED: "true",
                HOLLOW_LABEL: "true",
            },
            "annotations": {HOLLOW_LABEL: "no kubelet runs its pods (a bench's node)"},
        },
        "status": {
            "capacity": gpu,
            "allocatable": gpu,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": reason,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
        },
    }


def add_hollow_gpu_node(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    name: str,
    product: str = "Hollow-GPU-80GiB",
    reason: str = "Hollow",
) -> None:
    """A hollow GPU Node and its ResourceSlice (one 80 GiB device, as the agent publishes)."""
    node: Any = core.create_node(hollow_gpu_node(name, product, reason))
    gpus = GpuSet(1, 80 * 1024, product, True)
    body = resource_slice(NodePlan(name, 64, 512 * 2**30, gpus), node.metadata.uid)
    custom.create_cluster_custom_object("resource.k8s.io", "v1", "resourceslices", body)


def renew_node_leases(api: client.ApiClient, nodes: list[str], done: threading.Event) -> None:
    """Renew the hollow nodes' Leases every 10 s until `done`, as a kubelet does, so they
    stay Ready (the node-lifecycle controller marks a node NotReady 40 s after its last
    renewal). Runs in a thread of its own; `nodes` may grow meanwhile."""
    leases = client.CoordinationV1Api(api)

    def renew(name: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}
        try:
            leases.patch_namespaced_lease(name, "kube-node-lease", {"spec": spec})
        except ApiException as exc:
            if exc.status != 404:
                raise
            leases.create_namespaced_lease(
                "kube-node-lease", {"metadata": {"name": name}, "spec": spec}
            )

    with ThreadPoolExecutor(32) as pool:  # 1,000 renewals must finish well within 40 s
        while not done.is_set():
            started = time.monotonic()
            list(pool.map(renew, list(nodes)))
            took = time.monotonic() - started
            if took > 20:
                print(f"  (renewing {len(nodes)} hollow nodes' Leases took {took:.0f} s)")
            done.wait(max(0.0, 10 - took))
