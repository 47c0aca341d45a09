"""Benchmark of trust under faults (issue 9): what clients see when things go wrong.

Prints, in one run, on a local cluster of its own (2x24 GiB + 1x80 GiB simulated GPUs):

(a) 1,000 `POST /select` on one task, 64 at once, two models alternating:
    count per status code, p50/p99 latency, and whether, once quiet, the
    selection, its one pod and `/status` agree on one model.
(b) the operator SIGKILLed in the middle of 20 model switches (10 before, 10
    while it is down), restarted 1 s later: duplicate pods seen (two live
    pods of one selection for the same model), most pods of the selection at
    once (make-before-break allows 2), and seconds to converge after the restart.
(c) the kube-apiserver SIGSTOPped for 10 s: the share of reads (`/config`,
    `/status`) answered from the cache, what the writes answered, and seconds
    to recover (a select answered 200 and `/readyz` 200) after it is resumed.
(d) `fovea-models up` stopped and started again on the same --state-dir: how
    many selections made through the API were kept.

Targets: 0 5xx, 0 lost selections, 0 duplicate pods, 100% reads served,
recovery <= 2 s.

    .venv/bin/python bench/faults.py
    .venv/bin/python bench/faults.py --selects 200 --concurrency 32 --skip-restart
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from kubernetes.client.exceptions import ApiException

from fovea.domain import constants as c
from fovea.localcluster.cluster import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import (
    PYTHON,
    Stack,
    bench_parser,
    catalog_body,
    free_port,
    local_cluster,
    percentile,
    print_tracebacks,
    progress,
    random_weights_option,
    wait_for,
)

NAMESPACE = "faults"
TASK = "det"
MODELS = ("one", "two")
GPUS = "2x24GiB,1x80GiB"
SETTLE_S = 180.0
SELECT = "/api/models/select"
# The operator's Lease and resync as the integration tests run it. A restarted
# operator keeps its identity, so it renews its own Lease at once; a replica with
# another identity would wait for it to expire (at most this long).
LEASE_S = 6


class Bench(Stack):
    def __init__(self, cluster: LocalCluster, workdir: Path) -> None:
        settings = {
            "FOVEA_OPERATOR_LEASE_SECONDS": str(LEASE_S),
            "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
            # Stable across restarts, as the pod name is in a cluster (manager/operator.yaml)
            # and as `fovea-models up` sets it: a restarted operator renews its own Lease.
            "FOVEA_OPERATOR_IDENTITY": "fovea-models-bench-operator",
        }
        super().__init__(
            cluster, workdir, NAMESPACE, settings=settings, api_log_level=None, http_timeout_s=30
        )

    def setup(self) -> None:
        self.prepare()
        spec = {
            "tasks": {TASK: {"options": {m: random_weights_option() for m in MODELS}}},
            "inference": {"offloadThreshold": 0.8},
        }
        self.create(c.CATALOG_PLURAL, catalog_body(spec))
        self.start()

    # --- observations --------------------------------------------------------

    def consistent(self) -> str | None:
        """The model everything agrees on (selection, status, its one pod, /status); else None."""
        sel = self.selection(TASK)
        model = sel["spec"].get("model")
        status = sel.get("status") or {}
        pods = self.live_pods()
        loaded = self.http.get("/api/models/status").json()["loaded_models"].get(TASK)
        agree = (
            status.get("phase") == "Ready"
            and status.get("model") == model
            and status.get("observedGeneration") == sel["metadata"]["generation"]
            and len(pods) == 1
            and (pods[0].metadata.labels or {}).get(c.LABEL_MODEL) == model
            and loaded is not None
            and loaded["pod"] == pods[0].metadata.name
            and self.http.get("/api/models/config").json()["models"][TASK]["selected"] == model
        )
        return str(model) if agree else None

    # --- (a) -----------------------------------------------------------------

    def concurrent_selects(self, total: int, concurrency: int) -> dict[str, Any]:
        latencies: list[float] = []
        codes: Counter[int | str] = Counter()
        lock = threading.Lock()
        local = threading.local()

        def one(i: int) -> None:
            http = getattr(local, "http", None)
            if http is None:
                http = local.http = httpx.Client(base_url=self.url, timeout=60)
            began = time.perf_counter()
            try:
                code: int | str = http.post(
                    SELECT, params={"task_type": TASK, "model_name": MODELS[i % 2]}
                ).status_code
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            with lock:
                latencies.append(time.perf_counter() - began)
                codes[code] += 1

        began = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(total)))
        wall = time.monotonic() - began
        quiet = time.monotonic()
        model = wait_for(self.consistent, SETTLE_S, 0.25)
        return {
            "codes": dict(sorted(codes.items(), key=str)),
            "p50_ms": percentile(latencies, 0.50) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "wall_s": wall,
            "consistent": model is not None,
            "model": model,
            "settle_s": time.monotonic() - quiet,
        }

    # --- (b) -----------------------------------------------------------------

    @contextmanager
    def pod_watch(self) -> Iterator[dict[str, int]]:
        """Poll the model pods every 0.1 s: the most at once, and duplicates of one model."""
        seen = {"max_pods": 0, "duplicates": 0, "polls": 0}
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                try:
                    pods = self.live_pods()
                except (ApiException, OSError):
                    done.wait(0.1)
                    continue
                per_model = Counter((p.metadata.labels or {}).get(c.LABEL_MODEL) for p in pods)
                seen["max_pods"] = max(seen["max_pods"], len(pods))
                seen["duplicates"] = max(
                    seen["duplicates"], sum(n - 1 for n in per_model.values() if n > 1)
                )
                seen["polls"] += 1
                done.wait(0.1)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            done.set()
            thread.join(5)

    def operator_killed(self, switches: int) -> dict[str, Any]:
        half = switches // 2
        codes: Counter[int] = Counter()
        with self.pod_watch() as seen:
            for i in range(switches):
                if i == half:
                    self.operator.kill()
                    killed = time.monotonic()
                codes[self.select(TASK, MODELS[i % 2])] += 1
                time.sleep(0.5 if i < half else 0.05)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - killed)))
            self.operator.start()
            restarted = time.monotonic()
            model = wait_for(self.consistent, SETTLE_S, 0.1)
            converge_s = time.monotonic() - restarted
            after = len(self.live_pods())
        return {
            "codes": dict(codes),
            "duplicates": seen["duplicates"],
            "max_pods": seen["max_pods"],
            "pods_after": after,
            "consistent": model is not None,
            "converge_s": converge_s,
        }

    # --- (c) -----------------------------------------------------------------

    def apiserver_paused(self, pause_s: float) -> dict[str, Any]:
        pid = next(
            comp.process.pid
            for comp in self.cluster._components  # the bench's own cluster
            if comp.name == "kube-apiserver"
        )
        reads: Counter[int | str] = Counter()
        writes: list[tuple[int | str, float]] = []
        stop = threading.Event()

        def reader() -> None:
            with httpx.Client(base_url=self.url, timeout=2) as http:
                while not stop.is_set():
                    for path in ("/api/models/config", "/api/models/status"):
                        try:
                            reads[http.get(path).status_code] += 1
                        except httpx.HTTPError as exc:
                            reads[type(exc).__name__] += 1
                    time.sleep(0.01)

        def writer(model: str) -> None:
            began = time.monotonic()
            code = self.select(TASK, model, timeout_s=60)
            writes.append((code, time.monotonic() - began))

        os.kill(pid, signal.SIGSTOP)
        paused = time.monotonic()
        try:
            readers = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
            for thread in readers:
                thread.start()
            writers = []
            for model in ("two", "one", "two"):
                thread = threading.Thread(target=writer, args=(model,), daemon=True)
                thread.start()
                writers.append(thread)
                time.sleep(1.0)
            time.sleep(max(0.0, pause_s - (time.monotonic() - paused)))
            stop.set()
            for thread in readers:
                thread.join(5)
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        recovered = wait_for(
            lambda: (
                self.select(TASK, "one", timeout_s=5) == 200
                and self.http.get("/readyz").status_code == 200
            ),
            60,
            0.05,
        )
        recover_s = time.monotonic() - resumed
        for thread in writers:
            thread.join(60)
        total = sum(reads.values())
        return {
            "reads": dict(reads),
            "served": reads.get(200, 0) / total if total else 0.0,
            "writes": [(code, round(seconds, 1)) for code, seconds in writes],
            "recovered": bool(recovered),
            "recover_s": recover_s,
            "consistent_after": wait_for(self.consistent, SETTLE_S, 0.25) is not None,
        }


# --- (d) ---------------------------------------------------------------------


def stack_restart(workdir: Path) -> dict[str, Any]:
    """`fovea-models up` twice on one --state-dir; were the API's selections kept?"""
    state_dir = workdir / "stack"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [*PYTHON, "up", "--state-dir", str(state_dir), "--port", str(port), "--gpus", GPUS]
    log = workdir / "up.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    chosen: dict[str, str] = {}

    def run_up() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def stop_up(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def ready(http: httpx.Client) -> dict[str, Any] | None:
        if http.get("/readyz").status_code != 200:
            return None
        answer = http.get("/api/models/config")
        return answer.json() if answer.status_code == 200 and answer.json()["models"] else None

    proc = run_up()
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            config = wait_for(lambda: ready(http), 300, 0.5)
            if config is None:
                return {"error": f"first `up` did not serve /config; see {log}"}
            for task, body in sorted(config["models"].items()):
                others = [
                    name
                    for name, opt in body["options"].items()
                    if name != body["selected"] and opt.get("framework") != "external_api"
                ]
                if others:
                    answer = http.post(SELECT, params={"task_type": task, "model_name": others[0]})
                    if answer.status_code == 200:
                        chosen[task] = others[0]
    finally:
        stop_up(proc)
    began = time.monotonic()
    proc = run_up()
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            config = wait_for(lambda: ready(http), 300, 0.5)
            restart_s = time.monotonic() - began
            if config is None:
                return {"error": f"second `up` did not serve /config; see {log}", "chosen": chosen}
            kept = {t: m for t, m in chosen.items() if config["models"][t]["selected"] == m}
            after = {t: config["models"][t]["selected"] for t in chosen}
    finally:
        stop_up(proc)
    return {
        "chosen": chosen,
        "kept": len(kept),
        "lost": len(chosen) - len(kept),
        "after": after,
        "restart_s": restart_s,
    }


# --- report ------------------------------------------------------------------


def report(results: dict[str, dict[str, Any]]) -> None:
    a, b, p, d = (results.get(k) for k in "abcd")
    print("\n=== bench/faults.py (targets: 0 5xx, 0 lost selections, 0 duplicate pods,")
    print("    100% reads served, recovery <= 2 s) ===")
    if a:
        five = sum(n for code, n in a["codes"].items() if isinstance(code, int) and code >= 500)
        print(
            f"(a) {sum(a['codes'].values())} selects: codes {a['codes']}  5xx={five}  "
            f"p50 {a['p50_ms']:.0f} ms  p99 {a['p99_ms']:.0f} ms  ({a['wall_s']:.1f} s); "
            f"final consistency: {'yes' if a['consistent'] else 'NO'} "
            f"(model {a['model']}, {a['settle_s']:.1f} s after the last answer)"
        )
    if b:
        print(
            f"(b) operator SIGKILLed during 20 switches: duplicate pods seen {b['duplicates']}, "
            f"most model pods at once {b['max_pods']} (make-before-break allows 2), "
            f"pods after {b['pods_after']}; converged {'yes' if b['consistent'] else 'NO'} "
            f"{b['converge_s']:.1f} s after its restart (Lease {LEASE_S} s); "
            f"select codes {b['codes']}"
        )
    if p:
        print(
            f"(c) kube-apiserver paused: reads served from the cache {p['served']:.1%} "
            f"({p['reads']}); writes answered {p['writes']} (code, s); recovered "
            f"{'yes' if p['recovered'] else 'NO'} {p['recover_s']:.2f} s after resume; "
            f"consistent after: {'yes' if p['consistent_after'] else 'NO'}"
        )
    if d:
        if "error" in d:
            print(f"(d) stack restart: {d['error']}")
        else:
            print(
                f"(d) stack restart (`fovea-models up` twice, one --state-dir): "
                f"{d['kept']} of {len(d['chosen'])} selections kept, {d['lost']} lost "
                f"(chosen {d['chosen']}, after {d['after']}); second start served in "
                f"{d['restart_s']:.1f} s"
            )


def main() -> None:
    parser = bench_parser(__doc__, summary=True)
    parser.add_argument("--selects", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--pause", type=float, default=10.0)
    parser.add_argument("--skip-restart", action="store_true", help="skip (d)")
    args = parser.parse_args()

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fovea-faults-") as tmp:
        workdir = Path(tmp)
        with local_cluster(workdir / "cluster", GPUS) as cluster:
            bench = Bench(cluster, workdir)
            try:
                bench.setup()
                progress("(a) concurrent selects ...")
                results["a"] = bench.concurrent_selects(args.selects, args.concurrency)
                progress("(b) operator killed ...")
                results["b"] = bench.operator_killed(args.switches)
                progress("(c) API server paused ...")
                results["c"] = bench.apiserver_paused(args.pause)
            finally:
                bench.stop()
        if not args.skip_restart:
            progress("(d) stack restart ...")
            results["d"] = stack_restart(workdir)
        report(results)
        print_tracebacks([workdir / n for n in ("api.log", "operator.log", "up.log")])


if __name__ == "__main__":
    main()
