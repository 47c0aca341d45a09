"""Benchmark of the local cluster: build, start and pod start-up latency.

    .venv/bin/python bench/cluster.py [--pods 50] [--cold-build]

Prints:
- the control-plane binaries: found in the cache (and how long the lookup took),
  or built now (cold build time); `--cold-build` builds into a fresh cache
  (minutes, heavy: it compiles Kubernetes);
- `fovea-models cluster up --detach` to ready, with a fresh state directory
  (PKI and an empty etcd) and again with that state kept (a restart);
- pod create -> Running through scheduler and node agent, p50 and p95, one pod
  at a time and as a burst of N pods created at once.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fovea.localcluster.binaries import ensure_binaries
from fovea.localcluster.rest import Rest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))
sys.path.insert(0, str(REPO / "bench"))

from pod_watch import RunningWatch  # noqa: E402
from support import bench_parser, create_namespace, percentile_rounded  # noqa: E402

CLI = [sys.executable, "-m", "fovea.localcluster.cli"]


def measure_build(cold: bool) -> None:
    if cold:
        cache = tempfile.mkdtemp(prefix="fovea-cold-cache-")
        os.environ["FOVEA_CACHE"] = cache
        os.environ["GOCACHE"] = str(Path(cache) / "go-build")
    started = time.monotonic()
    directory = ensure_binaries(verbose=True)
    took = time.monotonic() - started
    kind = "cold build" if cold or took > 30 else "cached, lookup"
    print(f"binaries ({directory}): {kind} {took:.1f}s")


def measure_up(state_dir: Path, label: str) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [*CLI, "up", "--detach", "--state-dir", str(state_dir), "--gpus", "2x24GiB,1x80GiB"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"cluster up failed: {result.stderr}")
    print(f"cluster up --detach to ready, {label}: {took:.2f}s")


def down(state_dir: Path) -> None:
    subprocess.run([*CLI, "down", "--state-dir", str(state_dir)], capture_output=True, check=True)


def pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "local", "command": ["sleep", "600"]}],
        },
    }


def measure_pods(rest: Rest, kubeconfig: Path, count: int, burst: bool) -> list[float]:
    namespace = f"bench-{'burst' if burst else 'serial'}-{os.getpid()}"
    create_namespace(rest, namespace)
    watch = RunningWatch(kubeconfig, namespace)
    created: dict[str, float] = {}
    for i in range(count):
        name = f"p{i}"
        created[name] = time.monotonic()
        rest.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=pod(name))
        if not burst:
            deadline = time.monotonic() + 30
            while name not in watch.running and time.monotonic() < deadline:
                time.sleep(0.002)
    deadline = time.monotonic() + 120
    while len(watch.running) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    latencies = [watch.running[n] - t for n, t in created.items() if n in watch.running]
    watch.close()
    rest.request("DELETE", f"/api/v1/namespaces/{namespace}")
    if len(latencies) < count:
        print(f"  only {len(latencies)} of {count} pods reached Running")
    return latencies


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--cold-build", action="store_true")
    args = parser.parse_args()
    measure_build(args.cold_build)
    with tempfile.TemporaryDirectory(prefix="fovea-bench-") as tmp:
        state_dir = Path(tmp) / "cluster"
        measure_up(state_dir, "fresh state")
        down(state_dir)
        measure_up(state_dir, "existing state (restart)")
        try:
            rest = Rest(state_dir / "kubeconfig")
            for burst in (False, True):
                latencies = measure_pods(rest, state_dir / "kubeconfig", args.pods, burst)
                mode = f"burst of {args.pods}" if burst else "one at a time"
                print(
                    f"pod create -> Running ({mode}, n={len(latencies)}): "
                    f"p50 {percentile_rounded(latencies, 0.5) * 1000:.0f} ms, "
                    f"p95 {percentile_rounded(latencies, 0.95) * 1000:.0f} ms, "
                    f"max {max(latencies) * 1000:.0f} ms, "
                    f"mean {statistics.mean(latencies) * 1000:.0f} ms"
                )
        finally:
            down(state_dir)


if __name__ == "__main__":
    main()
