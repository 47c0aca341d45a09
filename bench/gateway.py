"""Benchmark of the inference route (issue 23): `POST /api/models/predict/{task}`.

Prints, in one run, on a local cluster of its own (the operator and the API as
subprocesses, two tiny torch models `mlp:64,10` and `mlp:64,5` on random
weights), each figure a ratio of two things measured back to back:

(a) the same body (`{"inputs": [[0.5]*64]}`) through the route vs straight to
    the model pod (its address from the selection's Service's EndpointSlice),
    with wrk at 1 and 64 connections, route and direct rounds alternating
    (median of the rounds): req/s, p50 and p99, and CPU time per request of
    the API process and of the model pod (psutil), which other load on a
    shared machine disturbs far less than req/s and latency do.
    Targets: route >= 0.9 x direct req/s, <= 1 ms added at p50.
(b) 32 clients sending predict continuously during 20 switches between the two
    models (`POST /api/models/select?...&wait=120`): non-2xx answers (target 0),
    the longest hold (X-Fovea-Held-Ms), the longest request, requests answered;
    per direction, which model answered while a switch was under way, and
    answers from the old model in the --gap seconds (1) after select -> Ready.
(c) an onDemand selection with keepAlive 2s: the first answer to a predict
    after a keep-alive unload vs `POST /api/models/load/det?wait=120` after one
    (load -> Ready), medians of 3 each and their ratio. Each starts --settle
    seconds (2) after the unload is seen (a new status.idleUnloadedAt and no
    model pod), so neither races the operator's own unload pass.

    .venv/bin/python bench/gateway.py
    .venv/bin/python bench/gateway.py --duration 2 --rounds 1 --switches 4 --repeats 1

Needs `wrk` (apt-get install wrk; `make bench` installs it). The API runs
pinned to the first CPU and wrk to the others (as in bench/api.py); the model
pod runs where the node agent starts it. Numbers from a shared machine are
noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from kubernetes import client

from fovea.domain import constants as c
from fovea.domain.endpoints import LABEL_SERVICE_NAME, Endpoint, service_name, slice_endpoints
from fovea.domain.resources import selection_name
from fovea.localcluster.cluster import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import (
    CPUS,
    PIN_LOADGEN,
    PIN_SERVER,
    Stack,
    bench_parser,
    catalog_body,
    cpu_seconds,
    local_cluster,
    percentile,
    print_tracebacks,
    progress,
    random_weights_option,
    run_wrk,
    wait_for,
)

NAMESPACE = "gateway"
TASK = "det"
SELECTION = selection_name(TASK)
MODELS = {"ten": 10, "five": 5}  # option name -> outputs per sample
GPUS = "1x24GiB"
SAMPLE = {"inputs": [[0.5] * 64]}
PREDICT = f"/api/models/predict/{TASK}"
HELD = "x-fovea-held-ms"


def option(outputs: int) -> dict[str, Any]:
    """A model a CPU loads in a moment (random weights); its answer's width names it."""
    return random_weights_option(f"mlp-{outputs}", f"mlp:64,{outputs}")


# --- wrk -----------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    api_us: float  # the API process's CPU time per request
    pod_us: float  # the model pod's CPU time per request


def wrk(
    url: str, script: Path, connections: int, duration: float, pids: tuple[int, int | None]
) -> Result:
    """One wrk run posting the sample to `url`; CPU per request of (API, pod)."""
    before = [cpu_seconds(p) for p in pids]
    run = run_wrk(url, connections, duration, script)
    after = [cpu_seconds(p) for p in pids]
    per = [(a - b) / max(run.requests, 1) * 1e6 for a, b in zip(after, before, strict=True)]
    return Result(run.rps, run.p50_ms, run.p99_ms, run.errors, per[0], per[1])


def median(results: list[Result]) -> Result:
    """The round with the median req/s (its latencies come with it); CPU medians, errors summed."""
    middle = sorted(results, key=lambda r: r.rps)[len(results) // 2]
    return Result(
        middle.rps,
        middle.p50_ms,
        middle.p99_ms,
        sum(r.errors for r in results),
        statistics.median(r.api_us for r in results),
        statistics.median(r.pod_us for r in results),
    )


WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


# --- the clients of (b), in a process of their own ----------------------------------


def clients(url: str, count: int) -> None:
    """`count` threads posting the sample until stdin closes; JSON of what they saw on stdout.

    A process of its own, so that the clients' threads do not take the GIL from
    the local cluster's node agent (probes) that runs in the bench's process.
    """
    stop = threading.Event()
    lock = threading.Lock()
    codes: Counter[str] = Counter()
    models: Counter[str] = Counter()
    latencies: list[float] = []
    held: list[int] = []
    answers: list[tuple[float, str, int]] = []  # (monotonic time sent, model, held ms)
    mismatched = switching = 0

    def one() -> None:
        nonlocal mismatched, switching
        with httpx.Client(base_url=url, timeout=180) as http:
            while not stop.is_set():
                began, sent = time.perf_counter(), time.monotonic()
                try:
                    resp = http.post(PREDICT, json=SAMPLE)
                    code = str(resp.status_code)
                except httpx.HTTPError as exc:
                    resp, code = None, type(exc).__name__
                took = time.perf_counter() - began
                with lock:
                    codes[code] += 1
                    latencies.append(took)
                    if resp is not None and resp.status_code == 200:
                        model = resp.headers.get("x-fovea-model", "")
                        models[model] += 1
                        held.append(int(resp.headers.get(HELD, "0") or 0))
                        answers.append((sent, model, held[-1]))
                        switching += resp.headers.get("x-fovea-switching") == "true"
                        if MODELS.get(model) != resp.json()["shape"][-1]:
                            mismatched += 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    sys.stdin.read()  # the bench closes it: stop
    stop.set()
    for t in threads:
        t.join(200)
    json.dump(
        {
            "codes": dict(codes),
            "models": dict(models),
            "latencies": latencies,
            "held": held,
            "mismatched": mismatched,
            "switching": switching,
            "answers": answers,
        },
        sys.stdout,
    )


# --- the bench -------------------------------------------------------------------------


class Bench(Stack):
    def __init__(self, cluster: LocalCluster, workdir: Path) -> None:
        super().__init__(
            cluster,
            workdir,
            NAMESPACE,
            settings={"FOVEA_OPERATOR_RESYNC_SECONDS": "5"},
            api_prefix=PIN_SERVER,
        )
        self.discovery = client.DiscoveryV1Api(self.api_client)

    def setup(self) -> None:
        self.prepare()
        spec = {"tasks": {TASK: {"options": {m: option(n) for m, n in MODELS.items()}}}}
        self.create(c.CATALOG_PLURAL, catalog_body(spec))
        self.start()
        if self.select(TASK, "ten", wait_s=120) != 200:
            raise SystemExit(f"'ten' did not become Ready; see {self.operator.log}")

    def endpoint(self) -> Endpoint | None:
        """The one Ready endpoint of the selection's Service, from its EndpointSlices."""
        slices = self.discovery.list_namespaced_endpoint_slice(
            NAMESPACE, label_selector=f"{LABEL_SERVICE_NAME}={service_name(SELECTION)}"
        ).items
        ready = [
            ep
            for obj in slices
            for ep in slice_endpoints(self.api_client.sanitize_for_serialization(obj))[1]
            if ep.ready and not ep.terminating
        ]
        return ready[0] if len(ready) == 1 else None

    # --- (a) -------------------------------------------------------------------

    def overhead(
        self, concurrency: list[int], rounds: int, duration: float
    ) -> dict[int, dict[str, Result]]:
        endpoint = wait_for(lambda: self.endpoint() if len(self.live_pods()) == 1 else None, 60)
        if endpoint is None:
            raise SystemExit("no single Ready endpoint for the selection's Service")
        answer = self.http.post(PREDICT, json=SAMPLE)
        if answer.status_code != 200 or answer.headers.get("x-fovea-pod") != endpoint.pod:
            raise SystemExit(f"the route did not answer from {endpoint.pod}: {answer.text[:300]}")
        direct = httpx.post(f"{endpoint.url}/predict", json=SAMPLE)
        if direct.status_code != 200 or direct.json()["shape"] != answer.json()["shape"]:
            raise SystemExit(f"{endpoint.url}/predict answered {direct.text[:300]}")
        pod_pid = listener(endpoint.address, endpoint.port)
        api_pid = self.api.pid
        progress(
            f"(a) route {self.url}{PREDICT} vs direct {endpoint.url}/predict "
            f"(pod {endpoint.pod}, pid {pod_pid}); API pid {api_pid}"
            + (f" on CPU {CPUS[0]}, wrk on {PIN_LOADGEN[-1]}" if PIN_SERVER else "")
        )
        script = self.workdir / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=json.dumps(SAMPLE)))
        urls = {"route": f"{self.url}{PREDICT}", "direct": f"{endpoint.url}/predict"}
        pids = (api_pid or 0, pod_pid)
        for url in urls.values():
            wrk(url, script, 4, 1, pids)  # warm-up
        out: dict[int, dict[str, Result]] = {}
        for conns in concurrency:
            runs: dict[str, list[Result]] = {v: [] for v in urls}
            for _ in range(rounds):
                for variant, url in urls.items():
                    runs[variant].append(wrk(url, script, conns, duration, pids))
            out[conns] = {v: median(r) for v, r in runs.items()}
            progress(f"    c={conns} done")
        return out

    # --- (b) -------------------------------------------------------------------

    def switches(self, count: int, clients_n: int, gap_s: float) -> dict[str, Any]:
        me = [sys.executable, "-P", str(Path(__file__).resolve())]
        proc = subprocess.Popen(
            [*me, "clients", "--url", self.url, "--clients", str(clients_n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        selects: list[tuple[int, float]] = []
        windows: list[tuple[float, float, float, str]] = []  # select sent, Ready, next, model
        began = time.monotonic()
        try:
            time.sleep(2.0)  # every client is sending
            for n in range(count):
                model = "five" if n % 2 == 0 else "ten"
                sent = time.monotonic()
                selects.append((self.select(TASK, model, wait_s=120), time.monotonic() - sent))
                ready = time.monotonic()
                time.sleep(gap_s)  # answers sent now must come from `model`
                windows.append((sent, ready, time.monotonic(), model))
                progress(
                    f"    switch {n + 1} to {model}: {selects[-1][0]} in {selects[-1][1]:.1f} s"
                )
            time.sleep(2.0)
        finally:
            raw, _ = proc.communicate(b"", timeout=300)  # stdin closed: the clients stop
        wall = time.monotonic() - began
        seen = json.loads(raw)
        codes = Counter(seen["codes"])
        during: dict[str, Counter[str]] = {m: Counter() for m in MODELS}
        for sent, ready, until, model in windows:
            for at, answered_by, held_ms in seen["answers"]:
                if sent <= at < ready:
                    during[model][answered_by] += 1
                    during[model]["held >= 1 s"] += held_ms >= 1000
                elif ready <= at < until:
                    during[model]["after Ready"] += 1
                    during[model]["stale after Ready"] += answered_by != model
        return {
            "during": {m: dict(counts) for m, counts in during.items()},
            "codes": dict(codes),
            "non2xx": sum(n for code, n in codes.items() if not code.startswith("2")),
            "answered": codes.get("200", 0),
            "models": seen["models"],
            "mismatched": seen["mismatched"],
            "switching": seen["switching"],
            "max_held_ms": max(seen["held"], default=0),
            "held_requests": sum(1 for h in seen["held"] if h > 0),
            "held_1s": sum(1 for h in seen["held"] if h >= 1000),
            "max_latency_s": max(seen["latencies"], default=float("nan")),
            "p50_ms": percentile(seen["latencies"], 0.5) * 1000,
            "p99_ms": percentile(seen["latencies"], 0.99) * 1000,
            "wall_s": wall,
            "select_codes": dict(Counter(code for code, _ in selects)),
            "select_s": statistics.median(s for _, s in selects) if selects else float("nan"),
        }

    # --- (c) -------------------------------------------------------------------

    def wakes(self, repeats: int, keep_alive: str, settle_s: float) -> dict[str, Any]:
        self.custom.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            NAMESPACE,
            c.SELECTION_PLURAL,
            SELECTION,
            {"spec": {"loadPolicy": "onDemand", "wanted": True, "keepAlive": keep_alive}},
        )
        stamp: list[str | None] = [None]

        def unloaded() -> bool:
            """A new idleUnloadedAt (later than the last one seen) and no model pod."""
            at = self.status(TASK).get("idleUnloadedAt")
            if at and at != stamp[0] and not self.live_pods():
                stamp[0] = at
                time.sleep(settle_s)  # the same quiet time before a wake-up and a load
                return True
            return False

        first: list[float] = []
        held: list[int] = []
        loads: list[float] = []
        failures: list[str] = []
        for _ in range(repeats):
            if not wait_for(unloaded, 180, 0.05):
                failures.append(f"not idle-unloaded within 180 s: {self.status(TASK)}")
                break
            sent = time.monotonic()
            answer = self.http.post(PREDICT, json=SAMPLE)
            if answer.status_code != 200:
                failures.append(f"predict after unload: {answer.status_code} {answer.text[:200]}")
                break
            first.append(time.monotonic() - sent)
            held.append(int(answer.headers.get(HELD, "0") or 0))
            if not wait_for(unloaded, 180, 0.05):
                failures.append(f"not idle-unloaded within 180 s: {self.status(TASK)}")
                break
            sent = time.monotonic()
            loaded = self.http.post(f"/api/models/load/{TASK}", params={"wait": 120})
            if loaded.status_code != 200:
                failures.append(f"load after unload: {loaded.status_code} {loaded.text[:200]}")
                break
            loads.append(time.monotonic() - sent)
        return {"first": first, "held": held, "loads": loads, "failures": failures}


def listener(address: str, port: int) -> int | None:
    """The pid of the process listening on address:port (the model pod), if one is seen."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if (
                conn.status == psutil.CONN_LISTEN
                and conn.laddr
                and conn.laddr.port == port
                and conn.laddr.ip in (address, "0.0.0.0", "::")
            ):
                return conn.pid
    except psutil.Error:
        pass
    return None


# --- report ----------------------------------------------------------------------------


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    a, b, w = (results.get(k) for k in "abc")
    print("\n=== bench/gateway.py (targets: route >= 0.9x direct req/s, <= 1 ms added at p50;")
    print("    0 non-2xx during switches) ===")
    if a:
        print(
            f"(a) POST {PREDICT} ({len(json.dumps(SAMPLE))} B body) through the route vs straight "
            f"to the pod; wrk {args.duration:g} s x {args.rounds} rounds each, alternating, medians"
        )
        print(
            f"    {'conns':>5} {'path':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'API us/req':>11} {'pod us/req':>11} {'errors':>7}"
        )
        for conns, pair in a.items():
            for variant in ("route", "direct"):
                r = pair[variant]
                api_us = f"{r.api_us:11.0f}" if variant == "route" else f"{'-':>11}"
                print(
                    f"    {conns:>5} {variant:<7} {r.rps:8.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
                    f"{api_us} {r.pod_us:11.0f} {r.errors:7d}"
                )
            route, direct = pair["route"], pair["direct"]
            ratio = route.rps / direct.rps if direct.rps else float("nan")
            added = route.p50_ms - direct.p50_ms
            print(
                f"    {conns:>5} {'ratio':<7} {ratio:7.2f}x {added:+8.2f} "
                f"{route.p99_ms - direct.p99_ms:+8.2f}   route/direct req/s "
                f"{'ok' if ratio >= 0.9 else 'BELOW 0.9'}, added p50 "
                f"{'ok' if added <= 1.0 else 'ABOVE 1 ms'}"
            )
    if b:
        print(
            f"(b) {args.clients} clients during {args.switches} switches ({b['wall_s']:.1f} s): "
            f"non-2xx {b['non2xx']} {'ok' if b['non2xx'] == 0 else 'MISSED'} "
            f"(codes {b['codes']}); answered {b['answered']} (by model {b['models']}; "
            f"body disagreeing with X-Fovea-Model {b['mismatched']}); longest hold "
            f"{b['max_held_ms']} ms ({b['held_requests']} requests held, {b['held_1s']} >= 1 s; "
            f"{b['switching']} answered by the previous model mid-switch); longest request "
            f"{b['max_latency_s'] * 1000:.0f} ms "
            f"(p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms); "
            f"selects {b['select_codes']}, median select->Ready {b['select_s']:.2f} s"
        )
        for model, counts in b["during"].items():
            print(
                f"    switches to {model}: answers sent meanwhile (by model) and in the "
                f"{args.gap:g} s after Ready: {counts}"
            )
    if w:
        first, loads = w["first"], w["loads"]
        f50 = statistics.median(first) if first else float("nan")
        l50 = statistics.median(loads) if loads else float("nan")
        print(
            f"(c) keepAlive {args.keep_alive}, {args.settle:g} s after each unload: first answer "
            f"after an idle unload median {f50:.2f} s (each {', '.join(f'{x:.2f}' for x in first)};"
            f" held {', '.join(map(str, w['held']))} ms) vs load->Ready median {l50:.2f} s "
            f"(each {', '.join(f'{x:.2f}' for x in loads)}): ratio {f50 / l50:.2f}x"
        )
        for failure in w["failures"]:
            print(f"(c) {failure}")


def main() -> int:
    parser = bench_parser(__doc__)
    sub = parser.add_subparsers(dest="mode")
    load = sub.add_parser("clients", help="(internal) the clients of (b)")
    load.add_argument("--url", required=True)
    load.add_argument("--clients", type=int, required=True)
    parser.add_argument("--concurrency", default="1,64", help="wrk connections for (a)")
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="route/direct rounds per setting")
    parser.add_argument("--clients", type=int, default=32, help="clients during (b)")
    parser.add_argument("--switches", type=int, default=20, help="model switches in (b)")
    parser.add_argument(
        "--gap", type=float, default=1.0, help="seconds in (b) after each Ready before the next"
    )
    parser.add_argument("--repeats", type=int, default=3, help="wake-ups and loads in (c)")
    parser.add_argument("--keep-alive", default="2s", help="the selection's keepAlive in (c)")
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds in (c) between seeing the unload and the predict or load",
    )
    parser.add_argument("--parts", default="abc", help="which parts to run (a subset of abc)")
    args = parser.parse_args()
    if args.mode == "clients":
        clients(args.url, args.clients)
        return 0
    if "a" in args.parts and shutil.which("wrk") is None:
        print("bench/gateway.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fovea-gateway-") as tmp:
        workdir = Path(tmp)
        with local_cluster(workdir / "cluster", GPUS) as cluster:
            bench = Bench(cluster, workdir)
            try:
                bench.setup()
                if "a" in args.parts:
                    progress("(a) route vs direct ...")
                    concurrency = [int(n) for n in args.concurrency.split(",")]
                    results["a"] = bench.overhead(concurrency, args.rounds, args.duration)
                if "b" in args.parts:
                    progress("(b) clients during switches ...")
                    results["b"] = bench.switches(args.switches, args.clients, args.gap)
                if "c" in args.parts:
                    progress("(c) keep-alive wake-ups ...")
                    results["c"] = bench.wakes(args.repeats, args.keep_alive, args.settle)
            finally:
                bench.stop()
        report(results, args)
        print_tracebacks([workdir / "api.log", workdir / "operator.log"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
