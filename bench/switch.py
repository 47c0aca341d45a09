"""Benchmark of a switch (issue 25): select -> Ready and select -> first answer, per kind of switch.

Prints, in one run, on a local cluster of its own (the operator and the API as
subprocesses, the demo catalog's default selections loaded beside a task `bench`
whose options are torch `mlp:64,H,64` models with safetensors weights of
--size-mb MB each, served over HTTP on loopback and fetched into the node cache
by the pods' fetch-weights init container):

1. first use (no cache): each switch goes to an option never fetched before;
2. cached weights, today's way: the same options again (weights in the node
   cache), each switch a new model-server pod;
3. warm runtime: the operator with warm switches on
   (FOVEA_OPERATOR_WARM_SWITCHES); each switch loads an option the warm pod has
   not held yet into its running process. Warm groups take options that fetch
   no weights, so rows 3 and 4 use a task `warm` of the same architecture built
   with random weights (nothing to fetch or cache);
4. switch back to a parked model: back and forth between the last two options
   of `warm`, each the one just left (kept in the warm pod's host memory).

Per row, over --switches N switches (20): p50 and p95 of select -> Ready
(`POST /api/models/select?...&wait=120` on this process's clock) and of select
-> first answer from the new model through the inference route
(`POST /api/models/predict/{task}`, sent every 20 ms during the switch; the
`X-Fovea-Model` header names who answered), each one's ratio to the model's own
load time as its pod reports it (`loadTimeSeconds`), where the pod says it
loaded from (`status.runtime.loadSource`, when it says), and the median time
between the steps of `status.lastSwitch` (docs/api.md). Rows 3 and 4 say "not
available" on a revision without warm switches.

Then the resident memory of the whole stack (RSS summed over the control plane,
the operator, the API, the model pods, and this process, which runs the node
agent; PSS beside it, which counts shared pages once) with the demo models
loaded: before (warm switches off, one model in `warm`, `bench` deleted) and
after (warm switches on, a parked model in `warm`'s pod).

    .venv/bin/python -P bench/switch.py
    .venv/bin/python -P bench/switch.py --switches 5 --size-mb 8

Numbers from a shared machine are noisy; the phases say where the time went.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from fovea.domain import constants as c
from fovea.domain.resources import WEIGHTS_CACHE_PATH, selection_name
from fovea.localcluster.cluster import LocalCluster
from fovea.operator.settings import OperatorSettings
from fovea.stack import split_defaults

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import (
    Child,
    Stack,
    bench_parser,
    local_cluster,
    mlp_weights,
    percentile_rounded,
    progress,
    served_folder,
    wait_for,
)

NAMESPACE = "switch"
TASK = "bench"  # options with weights (fetched into the node cache): rows 1 and 2
WARM = "warm"  # options without (warm groups fetch none): rows 3, 4 and the memory
DEMO = Path(__file__).resolve().parents[1] / "manifests" / "catalog" / "demo.yaml"
SAMPLE = {"inputs": [[0.5] * 64]}
PREDICT_EVERY_S = 0.02
WARM_AVAILABLE = "warm_switches" in OperatorSettings.model_fields
NOT_AVAILABLE = "not available (this revision has no warm switches: FOVEA_OPERATOR_WARM_SWITCHES)"
pct = percentile_rounded  # the rank round(q * (n - 1)), as this bench has always printed


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Switch:
    ready_s: float
    answer_s: float | None
    load_s: float | None
    source: str | None
    steps: list[tuple[str, float]]  # (phase, seconds since the step before)


@dataclass
class Row:
    name: str
    switches: list[Switch] = field(default_factory=list)
    note: str | None = None


class Bench(Stack):
    def __init__(self, cluster: LocalCluster, workdir: Path, url: str, digests: list[str]) -> None:
        super().__init__(
            cluster,
            workdir,
            NAMESPACE,
            settings={"FOVEA_OPERATOR_RESYNC_SECONDS": "5"},
            stop_timeout_s=30,
        )
        self.weights_url, self.digests = url, digests

    def options(self, arch: str) -> dict[str, Any]:
        return {
            f"m{n}": {
                "modelId": f"bench-m{n}",
                "framework": "pytorch",
                "vramGb": 1.0,
                "architecture": arch,
                "weights": f"{self.weights_url}/m{n}.safetensors",
                "weightsSha256": digest,
            }
            for n, digest in enumerate(self.digests)
        }

    def weightless(self, arch: str) -> dict[str, Any]:
        """The same architecture, built with random weights: nothing to fetch or cache."""
        return {
            f"r{n}": {
                "modelId": f"warm-r{n}",
                "framework": "pytorch",
                "vramGb": 1.0,
                "architecture": arch,
                "allowRandomWeights": True,
            }
            for n in range(len(self.digests) + 1)  # r0 .. r{n+1}: one more, for a warm-up
        }

    def setup(self, arch: str) -> None:
        self.prepare()
        catalogs, selections = split_defaults(list(yaml.safe_load_all(DEMO.read_text())))
        (catalog,) = catalogs
        catalog["spec"]["tasks"][TASK] = {"options": self.options(arch)}
        catalog["spec"]["tasks"][WARM] = {"options": self.weightless(arch)}
        catalog["spec"]["weightsCache"] = {"kind": "node", "sizeGb": 50}
        self.create(c.CATALOG_PLURAL, catalog)
        for body in selections:
            self.create(c.SELECTION_PLURAL, body)
        self.start(ready_timeout_s=120)

    def demo_ready(self) -> bool:
        items = self.custom.list_namespaced_custom_object(
            c.GROUP, c.VERSION, NAMESPACE, c.SELECTION_PLURAL
        )["items"]
        demo = [s for s in items if s["spec"]["task"] not in (TASK, WARM)]
        return bool(demo) and all(
            (s.get("status") or {}).get("phase") in ("Ready", "CPUFallback") for s in demo
        )

    def settled(self, task: str) -> bool:
        """`task` Ready on the pod the operator wants (its report), the demo Ready too."""
        status = self.status(task)
        runtime = status.get("runtime") or {}
        mine = status.get("phase") == "Ready" and runtime.get("pod") == status.get("pod")
        return mine and self.demo_ready()

    def quiet(self) -> bool:
        """No model pod terminating and one per selection that names a pod: nothing left
        over from a rollout is counted in the memory."""
        pods = self.core.list_namespaced_pod(
            NAMESPACE, label_selector=f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}"
        ).items
        items = self.custom.list_namespaced_custom_object(
            c.GROUP, c.VERSION, NAMESPACE, c.SELECTION_PLURAL
        )["items"]
        named = {(s.get("status") or {}).get("pod") for s in items} - {None}
        live = {p.metadata.name for p in pods if p.metadata.deletion_timestamp is None}
        return len(pods) == len(live) and live == named

    def restart_operator(self, warm: bool) -> None:
        self.operator.stop()
        self.operator.start({"FOVEA_OPERATOR_WARM_SWITCHES": "true"} if warm else {})

    def remove(self, task: str) -> None:
        """Delete the task's selection and wait until its model pods are gone."""
        self.custom.delete_namespaced_custom_object(
            c.GROUP, c.VERSION, NAMESPACE, c.SELECTION_PLURAL, selection_name(task)
        )
        selector = f"{c.LABEL_SELECTION}={selection_name(task)}"
        wait_for(
            lambda: not self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items,
            120,
            0.5,
        )

    def empty_node_caches(self) -> None:
        for node_dir in (self.cluster.state.root / "nodes").glob("*/hostpath"):
            shutil.rmtree(node_dir / WEIGHTS_CACHE_PATH.lstrip("/"), ignore_errors=True)

    def switch(self, model: str, task: str = TASK) -> Switch:
        """Select `model`; Ready and the first answer from it, on this process's clock."""
        answered: list[float] = []
        stop = threading.Event()
        started = time.perf_counter()

        def ask() -> None:
            with httpx.Client(base_url=str(self.http.base_url), timeout=60) as http:
                while not stop.is_set():
                    try:
                        resp = http.post(f"/api/models/predict/{task}", json=SAMPLE)
                    except httpx.HTTPError:
                        resp = None
                    ok = resp is not None and resp.status_code == 200
                    if ok and resp is not None and resp.headers.get("x-fovea-model") == model:
                        answered.append(time.perf_counter() - started)
                        return
                    time.sleep(PREDICT_EVERY_S)

        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        resp = self.http.post(
            "/api/models/select", params={"task_type": task, "model_name": model, "wait": 120}
        )
        ready_s = time.perf_counter() - started
        if resp.status_code != 200:
            stop.set()
            status = {k: v for k, v in self.status(task).items() if k != "conditions"}
            raise SystemExit(
                f"select {model}: {resp.status_code} {resp.text[:300]}\nstatus: {status}\n"
                f"logs in {self.workdir}"
            )
        asker.join(60)
        stop.set()
        status = self.status(task)
        runtime = status.get("runtime") or {}
        load_s = status.get("loadTimeSeconds") or runtime.get("loadTimeSeconds")
        record = status.get("lastSwitch") or {}
        steps: list[tuple[str, float]] = []
        if record.get("model") == model:
            phases = record.get("phases") or []
            for before, now in itertools.pairwise(phases):
                steps.append((now["name"], _at(now["at"]) - _at(before["at"])))
        return Switch(
            ready_s, answered[0] if answered else None, load_s, runtime.get("loadSource"), steps
        )


# --- memory ----------------------------------------------------------------------


def stack_memory(operator: Child, api: Child) -> dict[str, tuple[float, float, int]]:
    """(RSS, PSS in GiB, processes) per part of the stack: this process's and its
    descendants."""
    own = psutil.Process()
    parts: dict[str, list[float]] = {}
    for proc in [own, *own.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            argv = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        name = proc.name()
        if proc.pid == own.pid:
            part = "this process (node agent + bench)"
        elif operator.proc is not None and proc.pid == operator.proc.pid:
            part = "operator"
        elif api.proc is not None and proc.pid == api.proc.pid:
            part = "API"
        elif "model-pod" in argv:
            part = "model pods"
        elif name in {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}:
            part = "control plane"
        else:
            part = f"other ({name})"
        rss, pss, count = parts.setdefault(part, [0.0, 0.0, 0])
        parts[part] = [rss + info.rss / 1024**3, pss + getattr(info, "pss", 0) / 1024**3, count + 1]
    return {k: (v[0], v[1], int(v[2])) for k, v in sorted(parts.items())}


def print_memory(label: str, parts: dict[str, tuple[float, float, int]]) -> None:
    rss = sum(r for r, _, _ in parts.values())
    pss = sum(p for _, p, _ in parts.values())
    print(f"  {label}: RSS {rss:.2f} GB, PSS {pss:.2f} GB")
    for part, (r, p, n) in parts.items():
        print(f"      {part:<36} RSS {r:5.2f} GB  PSS {p:5.2f} GB  ({n} processes)")


# --- report ------------------------------------------------------------------------


def print_row(row: Row) -> None:
    print(f"{row.name}:")
    if row.note:
        print(f"  {row.note}")
        return
    s = row.switches
    ready = [x.ready_s for x in s]
    answers = [x.answer_s for x in s if x.answer_s is not None]
    ratios = [x.ready_s / x.load_s for x in s if x.load_s]
    answer_ratios = [x.answer_s / x.load_s for x in s if x.load_s and x.answer_s is not None]
    loads = [x.load_s for x in s if x.load_s]
    print(
        f"  select -> Ready         p50 {pct(ready, 0.5):6.3f} s  p95 {pct(ready, 0.95):6.3f} s"
        f"   (x{pct(ratios, 0.5):.1f} / x{pct(ratios, 0.95):.1f} the load)"
    )
    print(
        f"  select -> first answer  p50 {pct(answers, 0.5):6.3f} s  p95 {pct(answers, 0.95):6.3f} s"
        f"   (x{pct(answer_ratios, 0.5):.1f} / x{pct(answer_ratios, 0.95):.1f} the load)"
        + ("" if len(answers) == len(s) else f"  [{len(s) - len(answers)} without an answer]")
    )
    print(
        f"  the pod's own load      p50 {pct(loads, 0.5):6.3f} s  p95 {pct(loads, 0.95):6.3f} s"
        f"   ({len(s)} switches; loaded from: "
        f"{dict(Counter(x.source or 'not said' for x in s))})"
    )
    by_step: dict[str, list[float]] = {}
    for x in s:
        for name, seconds in x.steps:
            by_step.setdefault(name, []).append(seconds)
    if by_step:
        steps = ", ".join(f"{n} +{statistics.median(v):.3f}" for n, v in by_step.items())
        print(f"  lastSwitch, median s since the step before: Planned, {steps}")
    if not loads:
        print("  (the pod reported no load time for these switches: ratios n/a)")
    started = sum(1 for x in s if any(name == "ProcessStarted" for name, _ in x.steps))
    print(f"  switches that started a new model-server process: {started} of {len(s)}")


def measure(
    bench: Bench,
    arch: str,
    paths: list[Path],
    n: int,
    rows: list[Row],
    memory: dict[str, dict[str, tuple[float, float, int]]],
) -> None:
    """The rows and the memory, appended to `rows` and `memory` as each is measured."""
    bench.setup(arch)
    progress(
        f"{TASK}: {n + 1} options {arch} ({paths[0].stat().st_size / 1e6:.0f} MB of "
        f"weights each) beside the demo selections; {n} switches per row"
    )
    bench.empty_node_caches()
    bench.switch("m0")  # the task's first model (not counted)
    if not wait_for(bench.demo_ready, 600, 1.0):
        raise SystemExit(f"the demo selections did not become Ready; {bench.workdir}")
    first = Row("1. first use (no cache: fetch, new pod)")
    for i in range(1, n + 1):
        first.switches.append(bench.switch(f"m{i}"))
    rows.append(first)
    progress("row 1 done")
    cached = Row("2. cached weights, today's way (new pod)")
    for i in range(n):  # m0 .. m{n-1}: every one cached, none the current
        cached.switches.append(bench.switch(f"m{i}"))
    rows.append(cached)
    progress("row 2 done")
    # The memory's baseline: the demo models and one model in `warm`, today's way.
    bench.remove(TASK)
    bench.switch("r0", WARM)
    if not wait_for(lambda: bench.settled(WARM) and bench.quiet(), 600, 0.5):
        raise SystemExit(f"not settled with r0 selected; {bench.workdir}")
    memory["before (warm switches off, one model in warm)"] = stack_memory(
        bench.operator, bench.api
    )
    warm = Row(f"3. warm runtime: load into the running pod ({WARM}: options without weights)")
    back = Row(f"4. switch back to a parked model ({WARM})")
    if WARM_AVAILABLE:
        bench.restart_operator(warm=True)  # r0's pod is replaced by a warm pod
        if not wait_for(lambda: bench.settled(WARM), 600, 0.5):
            raise SystemExit(f"not settled after warm switches went on; {bench.workdir}")
        bench.switch(f"r{n + 1}", WARM)  # not counted: the warm pod may still be coming
        wait_for(lambda: bench.settled(WARM), 600, 0.5)
        for i in range(1, n + 1):  # none held by the warm pod yet (r0, left first, is no target)
            warm.switches.append(bench.switch(f"r{i}", WARM))
        progress("row 3 done")
        for i in range(n):  # r{n} serves: back to r{n-1}, then r{n}, ...: each the one left
            back.switches.append(bench.switch(f"r{n - 1 + i % 2}", WARM))
        if not wait_for(lambda: bench.settled(WARM) and bench.quiet(), 600, 0.5):
            raise SystemExit(f"not settled after the switches back; {bench.workdir}")
        parked = (bench.status(WARM).get("runtime") or {}).get("parked") or []
        said = "a parked model in warm" if parked else "warm's pod reports NO parked model"
        memory[f"after (warm switches on, {said})"] = stack_memory(bench.operator, bench.api)
    else:
        warm.note = back.note = NOT_AVAILABLE
    rows.extend([warm, back])


def run(workdir: Path, n: int, size_mb: int) -> None:
    """The rows and the memory, printed; `workdir` holds the logs."""
    served = workdir / "served"
    served.mkdir()
    arch, paths = mlp_weights(served, [f"m{i}" for i in range(n + 1)], size_mb)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    rows: list[Row] = []
    memory: dict[str, dict[str, tuple[float, float, int]]] = {}
    with served_folder(served) as url, local_cluster(workdir / "cluster") as cluster:
        bench = Bench(cluster, workdir, url, digests)
        try:
            measure(bench, arch, paths, n, rows, memory)
        finally:
            bench.stop()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"\nbench/switch.py at {commit}: {n} switches per row, {os.cpu_count()} CPUs")
    for row in rows:
        print_row(row)
    print("resident memory of the stack, the demo models loaded:")
    for label, parts in memory.items():
        print_memory(label, parts)
    if len(memory) < 2:
        print(f"  after a parked model exists: {NOT_AVAILABLE}")


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--switches", type=int, default=20, help="switches per row")
    parser.add_argument("--size-mb", type=int, default=16, help="each model's weights, MB")
    args = parser.parse_args()
    n = args.switches
    if n < 3:
        parser.error("--switches: at least 3 (a switch back needs two models left behind)")

    workdir = Path(tempfile.mkdtemp(prefix="fovea-switch-"))
    run(workdir, n, args.size_mb)  # on a failure the directory stays: its logs say why
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
