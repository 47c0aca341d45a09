"""Benchmark: select -> Ready for a model whose weights are cached vs not, on the local cluster.

Prints, from one run (the real operator; the node agent runs the model pods, so
the fetch-weights init container really downloads and the model really loads):
1. select -> Ready p50 (and each run) when the node cache is empty: the pod
   fetches the weights from an HTTP server on loopback, verifies them, loads them;
2. the same when the weights are in the node cache (the model was unselected and
   is selected again: a new pod, the same node);
3. the bytes each start fetched (`status.weights.fetchedBytes`): the second start
   of the same model fetches 0 bytes.

The weights are an `mlp:IN,HIDDEN,OUT` of about `--size-mb` MB in safetensors. Each
round empties the node cache first (the host directory of the node that ran it), so
both conditions alternate in one run.

Usage: .venv/bin/python -P bench/weights_ready.py [--rounds 3] [--size-mb 256]
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from fovea.domain import constants as c
from fovea.domain.resources import WEIGHTS_CACHE_PATH, selection_name
from fovea.localcluster.cluster import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import (
    PYTHON,
    Child,
    bench_parser,
    catalog_body,
    cluster_clients,
    local_cluster,
    mlp_weights,
    served_folder,
    stack_env,
)

NS = "default"
TASK = "det"
READY_TIMEOUT_S = 600.0


def catalog(arch: str, url: str, sha256: str) -> dict[str, Any]:
    option = {
        "modelId": arch,
        "framework": "pytorch",
        "vramGb": 1.0,
        "architecture": arch,
        "weights": url,
        "weightsSha256": sha256,
    }
    return catalog_body(
        {
            "tasks": {TASK: {"options": {"m": option}}},
            "inference": {"offloadThreshold": 0.8, "warmupOnStartup": True},
            "weightsCache": {"kind": "node", "sizeGb": 20},
        }
    )


def select(custom: client.CustomObjectsApi, model: str | None) -> None:
    body = {"spec": {"task": TASK, "model": model}}
    try:
        custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, NS, c.SELECTION_PLURAL, selection_name(TASK), body
        )
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        full = {"apiVersion": c.API_VERSION, "kind": c.SELECTION_KIND}
        full["metadata"] = {"name": selection_name(TASK)}  # type: ignore[assignment]
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, NS, c.SELECTION_PLURAL, {**full, **body}
        )


def status(custom: client.CustomObjectsApi) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(
        c.GROUP, c.VERSION, NS, c.SELECTION_PLURAL, selection_name(TASK)
    )
    return dict(obj.get("status") or {})


def ready_after(custom: client.CustomObjectsApi) -> tuple[float, dict[str, Any]]:
    """Select the model; seconds until its status is Ready with this start's weights report."""
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.perf_counter()
    select(custom, "m")
    deadline = started + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        now = status(custom)
        weights = now.get("weights") or {}
        if weights.get("phase") == "Failed":
            raise SystemExit(f"weights failed: {weights.get('message')}")
        fresh = str(weights.get("updatedAt") or "") >= since
        if now.get("phase") in ("Ready", "CPUFallback") and fresh:
            return time.perf_counter() - started, now
        time.sleep(0.05)
    raise SystemExit(f"not Ready after {READY_TIMEOUT_S:.0f}s: {status(custom)}")


def unselect(custom: client.CustomObjectsApi, core: client.CoreV1Api) -> None:
    select(custom, None)
    selector = f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}"
    while core.list_namespaced_pod(NS, label_selector=selector).items:
        time.sleep(0.1)


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=256)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="fovea-bench-weights-"))
    served = state / "served"
    served.mkdir()
    arch, (path,) = mlp_weights(served, ["weights"], args.size_mb)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    size = path.stat().st_size
    with served_folder(served) as base, local_cluster(state / "cluster") as cluster:
        measure(cluster, state, args.rounds, arch, f"{base}/{path.name}", digest, size)
    return 0


def measure(
    cluster: LocalCluster, state: Path, rounds: int, arch: str, url: str, digest: str, size: int
) -> None:
    """The rounds, printed as they end, and their summary; the operator started here."""
    with ExitStack() as own:
        kubeconfig, _, core, custom = cluster_clients(cluster)
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, NS, c.CATALOG_PLURAL, catalog(arch, url, digest)
        )
        env = stack_env(kubeconfig, NS)
        own.enter_context(Child([*PYTHON, "operator", "-n", NS], env, state / "operator.log", 30))
        print(f"weights: {arch}, {size / 1e6:.1f} MB safetensors over HTTP on loopback")
        cold: list[float] = []
        warm: list[float] = []
        fetched: list[tuple[int, int]] = []
        for round_ in range(rounds):
            for node_dir in (cluster.state.root / "nodes").glob("*/hostpath"):
                shutil.rmtree(node_dir / WEIGHTS_CACHE_PATH.lstrip("/"), ignore_errors=True)
            seconds, first = ready_after(custom)
            cold.append(seconds)
            unselect(custom, core)
            again_s, again = ready_after(custom)
            warm.append(again_s)
            same = again.get("node") == first.get("node")
            fetched.append((first["weights"]["fetchedBytes"], again["weights"]["fetchedBytes"]))
            rate = (first["weights"].get("bytesPerSecond") or 0) / 1e6
            print(
                f"round {round_ + 1}: not cached {seconds:.2f} s "
                f"(fetched {first['weights']['fetchedBytes']} B at {rate:.0f} MB/s), "
                f"cached {again_s:.2f} s "
                f"(fetched {again['weights']['fetchedBytes']} B, same node: {same})"
            )
            unselect(custom, core)
        print(
            f"select -> Ready p50: not cached {statistics.median(cold):.2f} s, "
            f"cached {statistics.median(warm):.2f} s "
            f"({statistics.median(cold) - statistics.median(warm):.2f} s saved)"
        )
        second = [b for _, b in fetched]
        verdict = "ok" if all(b == 0 for b in second) else "NOT 0"
        print(f"second start fetched: {second} bytes ({verdict}); first: {[a for a, _ in fetched]}")


if __name__ == "__main__":
    sys.exit(main())
