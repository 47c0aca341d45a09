"""Benchmark of the command line's cold start (issue 17): `fovea-models ps` wall time.

Runs `fovea-models ps` (the installed console script, a new process each
time, so every import is paid) against a live API, and prints the wall
time's min / median / max and the CPU time it used, beside a bare
`python -c pass` and the load average for scale (on a shared machine the
wall time follows the load; the CPU time much less). It also
runs it once under `python -X importtime` and checks that no torch, kopf,
kubernetes or pydantic module is imported on this path, printing the
slowest imports.

Target: median <= 0.5 s, none of those imports.

    .venv/bin/python bench/cli.py                  # a local cluster and API of its own
    .venv/bin/python bench/cli.py --api URL        # an API already running
    .venv/bin/python bench/cli.py --runs 20
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from fovea.kube import install_cluster_scoped

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import Child, bench_parser, free_port, local_cluster, wait_for

TARGET_S = 0.5
FORBIDDEN = ("torch", "kopf", "kubernetes", "pydantic")
REPO = Path(__file__).resolve().parents[1]
DEMO_CATALOG = REPO / "manifests" / "demo-catalog" / "catalog.yaml"
NAMESPACE = "bench-cli"
BIN = Path(sys.executable).parent


@contextmanager
def local_api(work: Path) -> Iterator[str]:
    """A local cluster with the demo catalog, and `fovea-models api` on a free port."""
    with local_cluster(work / "cluster", "2x24GiB,1x80GiB") as cluster:
        kubeconfig = str(cluster.kubeconfig)
        install_cluster_scoped(kubeconfig)
        env = {**os.environ, "KUBECONFIG": kubeconfig}
        subprocess.run(["kubectl", "create", "namespace", NAMESPACE], env=env, check=True)
        subprocess.run(
            ["kubectl", "apply", "-n", NAMESPACE, "-f", str(DEMO_CATALOG)], env=env, check=True
        )
        port = free_port()
        api_env = {**env, "FOVEA_API_NAMESPACE": NAMESPACE}
        api = [str(BIN / "fovea-models"), "api", "--port", str(port)]
        with Child(api, api_env, work / "api.log"):
            url = f"http://127.0.0.1:{port}"
            readyz = f"{url}/readyz"
            if not wait_for(lambda: httpx.get(readyz, timeout=5).status_code == 200, 120, 0.2):
                raise RuntimeError(f"{url} did not become ready")
            yield url


def wall(argv: list[str], env: dict[str, str]) -> float:
    return timed(argv, env)[0]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def imports(url: str, env: dict[str, str]) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of every import of `fovea-models ps`."""
    result = subprocess.run(
        [sys.executable, "-P", "-X", "importtime", "-m", "fovea.cli", "ps", "--api", url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        out.append((int(cumulative), name))
    return out


def measure(url: str, runs: int) -> bool:
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    ps = [str(BIN / "fovea-models"), "ps", "--api", url]
    wall(ps, env)  # the first run warms the file-system cache
    samples = [timed(ps, env) for _ in range(runs)]
    times = [w for w, _ in samples]
    cpu = statistics.median(c for _, c in samples)
    bare = statistics.median(wall([sys.executable, "-c", "pass"], env) for _ in range(5))
    median = statistics.median(times)
    load = os.getloadavg()[0]
    print(
        f"`fovea-models ps` cold start, {runs} runs against {url} "
        f"({os.cpu_count()} CPUs, load average {load:.1f})"
    )
    print(
        f"  wall: min {min(times):.3f} s, median {median:.3f} s, max {max(times):.3f} s "
        f"(target <= {TARGET_S} s); CPU (user+sys) median {cpu:.3f} s; "
        f"bare `python -c pass`: {bare:.3f} s wall"
    )
    modules = imports(url, env)
    heavy = sorted({name for _, name in modules if name.split(".")[0] in FORBIDDEN}, key=len)
    top = sorted(modules, reverse=True)[:8]
    print(
        "  slowest imports (cumulative): " + ", ".join(f"{n} {us / 1000:.0f} ms" for us, n in top)
    )
    print(f"  torch/kopf/kubernetes/pydantic imported: {', '.join(heavy[:5]) if heavy else 'none'}")
    ok = median <= TARGET_S and not heavy
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--api", help="an API already running (default: start one)")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if args.api:
        return 0 if measure(args.api.rstrip("/"), args.runs) else 1
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp, local_api(Path(tmp)) as url:
        return 0 if measure(url, args.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
