"""Benchmark of the operator's failover (issue 26): a hot standby takes over the Lease.

Prints, in one run, on a local cluster of its own (simulated GPUs), with the
operator's default Lease (FOVEA_OPERATOR_LEASE_SECONDS, 1.5 s):

(a) failover: two operator processes, the leader and a hot standby. Each
    round SIGKILLs the leader and switches a task's model at the same moment;
    the figure is the time from the kill to the standby's first write (the new
    model's pod created, as a watch on the pods sees it). The killed replica is
    then started again, as the new standby (a Deployment's replacement pod).
(b) restart: one operator alone, SIGKILLed and started again at once with the
    same identity (as `fovea-models up` and a kubelet restart it): kill to first
    write, Python's start included.

Throughout, a watch on the model pods counts duplicates (two live pods of one
selection for one model) and rewrites (the pod of a task nobody switched
replaced); at the end, lost selections (a status that never caught up with its
spec). Targets: first write <= 2 s after the kill, 0 duplicates, 0 lost.

    .venv/bin/python bench/failover.py
    .venv/bin/python bench/failover.py --rounds 20 --restarts 5
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from fovea.kube import api_client
from fovea.localcluster.cluster import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import (
    PYTHON,
    Child,
    bench_parser,
    catalog_body,
    free_port,
    local_cluster,
    percentile,
    prepare_namespace,
    print_tracebacks,
    progress,
    random_weights_option,
    selection_body,
    stack_env,
    wait_for,
)

NAMESPACE = "failover"
SWITCHED, STEADY = "det", "keep"
MODELS = ("one", "two")
GPUS = "1x24GiB"
LEASE = "fovea-models-operator"
VERBOSE = ["--verbose"] if os.environ.get("BENCH_VERBOSE") else []
# A started replica answers /healthz once its cache has started listing; it is given this
# much longer to finish the lists before the next kill (a few kinds, a few objects each).
WARM_S = 1.0
SETTLE_S = 180.0
POLL_S = 0.05  # how often a wait looks again


def _get(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


class Operator(Child):
    """One operator process with a fixed identity (a pod name), its log in the temp dir."""

    def __init__(self, identity: str, env: dict[str, str], log: Path) -> None:
        super().__init__([], {**env, "FOVEA_OPERATOR_IDENTITY": identity}, log)
        self.identity = identity
        self.port = 0

    def start(self, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        argv = ["operator", "-n", NAMESPACE, f"--liveness-port={self.port}", *VERBOSE]
        self.argv = [*PYTHON, *argv]
        super().start(env)

    def wait_warm(self) -> None:
        """Until its /healthz answers (started, its cache listing), then WARM_S more."""
        url = f"http://127.0.0.1:{self.port}/healthz"
        if not wait_for(lambda: _get(url), 120, POLL_S):
            raise SystemExit(f"{self.identity} never answered {url}; see {self.log}")
        time.sleep(WARM_S)


class PodWatch:
    """The model pods as a watch sees them: when each was added, duplicates, rewrites."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.added: list[tuple[float, str, str]] = []  # (monotonic, task, model)
        self.live: dict[str, tuple[str, str, str]] = {}  # name -> (task, model, uid)
        self.duplicates = 0
        self.duplicate_names: list[str] = []  # the pods, when the most duplicates were seen
        self.steady_uids: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PodWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def first_added(self, task: str, model: str, after: float) -> float | None:
        with self._lock:
            times = [t for t, k, m in self.added if (k, m) == (task, model) and t >= after]
        return min(times) if times else None

    def _run(self) -> None:
        selector = f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}"
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    NAMESPACE,
                    label_selector=selector,
                    timeout_seconds=60,
                ):
                    self._seen(event["type"], event["object"], time.monotonic())
                    if self._stop.is_set():
                        return
            except (ApiException, HTTPError, OSError):
                time.sleep(0.1)

    def _seen(self, kind: str, pod: Any, at: float) -> None:
        meta = pod.metadata
        labels = meta.labels or {}
        task, model = labels.get(c.LABEL_TASK, ""), labels.get(c.LABEL_MODEL, "")
        with self._lock:
            if kind == "ADDED" and meta.name not in self.live:
                self.added.append((at, task, model))
                if task == STEADY:
                    self.steady_uids.add(meta.uid)
            if kind == "DELETED" or meta.deletion_timestamp is not None:
                self.live.pop(meta.name, None)
            else:
                self.live[meta.name] = (task, model, meta.uid)
            per = Counter((k, m) for k, m, _ in self.live.values())
            extra = sum(n - 1 for n in per.values() if n > 1)
            if extra > self.duplicates:
                self.duplicates = extra
                self.duplicate_names = sorted(
                    name for name, (k, m, _) in self.live.items() if per[(k, m)] > 1
                )


class Bench:
    def __init__(self, cluster: LocalCluster, workdir: Path) -> None:
        self.kubeconfig = str(cluster.kubeconfig)
        api = api_client(self.kubeconfig)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.leases = client.CoordinationV1Api(api)
        self.env = stack_env(self.kubeconfig, NAMESPACE)
        self.workdir = workdir
        self.operators = {
            name: Operator(f"bench-operator-{name}", self.env, workdir / f"operator-{name}.log")
            for name in ("a", "b")
        }
        self.model = MODELS[0]
        self.pods = PodWatch(self.core)

    def setup(self) -> None:
        prepare_namespace(self.kubeconfig, self.core, NAMESPACE)
        options = {m: random_weights_option() for m in MODELS}
        tasks = {task: {"options": options} for task in (SWITCHED, STEADY)}
        self._create(c.CATALOG_PLURAL, catalog_body({"tasks": tasks}))
        for task in (SWITCHED, STEADY):
            body = selection_body(selection_name(task), task, MODELS[0])
            self._create(c.SELECTION_PLURAL, body)
        self.pods.start()
        self.operators["a"].start()
        if not wait_for(lambda: self.holder() == self.operators["a"].identity, 60, POLL_S):
            raise SystemExit(f"the operator never held its Lease; see {self.workdir}")
        self.operators["b"].start()
        for task in (SWITCHED, STEADY):
            if not wait_for(lambda t=task: self.ready(t, MODELS[0]), SETTLE_S, POLL_S):
                raise SystemExit(f"{task} never became Ready; see {self.workdir}")

    def _create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, NAMESPACE, plural, body)

    def stop(self) -> None:
        self.pods.stop()
        for operator in self.operators.values():
            operator.stop()

    # --- observations --------------------------------------------------------

    def holder(self) -> str | None:
        lease = self.leases.read_namespaced_lease(LEASE, NAMESPACE)
        return lease.spec.holder_identity if lease.spec else None

    def selection(self, task: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, NAMESPACE, c.SELECTION_PLURAL, selection_name(task)
        )
        return obj

    def ready(self, task: str, model: str) -> bool:
        obj = self.selection(task)
        status = obj.get("status") or {}
        return bool(
            status.get("phase") == "Ready"
            and status.get("model") == model
            and status.get("observedGeneration") == obj["metadata"]["generation"]
        )

    def switch(self) -> str:
        self.model = MODELS[1] if self.model == MODELS[0] else MODELS[0]
        self.custom.patch_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            NAMESPACE,
            c.SELECTION_PLURAL,
            selection_name(SWITCHED),
            {"spec": {"model": self.model}},
        )
        return self.model

    def kill_and_switch(self, victim: Operator) -> float | None:
        """SIGKILL `victim` and switch at once; seconds from the kill to the new pod."""
        killed = time.monotonic()
        victim.kill(wait=False)
        model = self.switch()
        added = wait_for(lambda: self.pods.first_added(SWITCHED, model, killed), 60, 0.01)
        assert victim.proc is not None
        victim.proc.wait()
        if not wait_for(lambda: self.ready(SWITCHED, model), SETTLE_S, POLL_S):
            raise SystemExit(f"{SWITCHED} never became Ready on {model}; see {self.workdir}")
        return None if added is None else float(added) - killed

    # --- (a) and (b) ---------------------------------------------------------

    def failover(self, rounds: int) -> list[float | None]:
        figures = []
        for i in range(rounds):
            leader = next(o for o in self.operators.values() if o.identity == self.holder())
            standby = next(o for o in self.operators.values() if o is not leader)
            standby.wait_warm()
            figures.append(self.kill_and_switch(leader))
            taken = wait_for(lambda s=standby: self.holder() == s.identity, 30, POLL_S)
            if not taken:
                raise SystemExit(f"round {i}: the standby never took the Lease; see {self.workdir}")
            leader.start()  # the replacement replica: the new standby
            progress(f"  failover {i + 1}/{rounds}: {_s(figures[-1])}")
        return figures

    def restart(self, rounds: int) -> list[float | None]:
        leader = next(o for o in self.operators.values() if o.identity == self.holder())
        for operator in self.operators.values():
            if operator is not leader:
                operator.stop()  # SIGTERM: a standby releases nothing and just goes
        figures = []
        for i in range(rounds):
            leader.wait_warm()
            killed = time.monotonic()
            leader.kill(wait=False)
            model = self.switch()
            assert leader.proc is not None
            leader.proc.wait()
            leader.start()  # at once, as `fovea-models up` would after its backoff's first step
            added = wait_for(
                lambda m=model, k=killed: self.pods.first_added(SWITCHED, m, k), 60, 0.01
            )
            figures.append(None if added is None else float(added) - killed)
            if not wait_for(lambda m=model: self.ready(SWITCHED, m), SETTLE_S, POLL_S):
                raise SystemExit(f"{SWITCHED} never became Ready on {model}; see {self.workdir}")
            progress(f"  restart {i + 1}/{rounds}: {_s(figures[-1])}")
        return figures

    def lost(self) -> list[str]:
        want = {SWITCHED: self.model, STEADY: MODELS[0]}
        return [
            t
            for t, m in want.items()
            if not wait_for(lambda t=t, m=m: self.ready(t, m), 60, POLL_S)
        ]


def _s(value: float | None) -> str:
    return "no write within 60 s" if value is None else f"{value:.2f} s"


def summary(name: str, figures: list[float | None]) -> str:
    seen = [f for f in figures if f is not None]
    missing = len(figures) - len(seen)
    return (
        f"{name}: kill -> first write p50 {percentile(seen, 0.5):.2f} s, "
        f"max {max(seen, default=0):.2f} s over {len(figures)} kills"
        + (f"; {missing} without a write in 60 s" if missing else "")
        + f"; <= 2 s: {sum(1 for f in seen if f <= 2.0)}/{len(figures)}"
    )


def main() -> None:
    parser = bench_parser(__doc__, summary=True)
    parser.add_argument("--rounds", type=int, default=10, help="leader kills with a standby (a)")
    parser.add_argument("--restarts", type=int, default=3, help="kills of a lone operator (b)")
    parser.add_argument("--keep", action="store_true", help="keep the logs (printed path)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="fovea-failover-"))
    try:
        progress(f"logs in {workdir}")
        with local_cluster(workdir / "cluster", GPUS) as cluster:
            bench = Bench(cluster, workdir)
            try:
                bench.setup()
                progress("(a) leader killed, standby takes over ...")
                failover = bench.failover(args.rounds)
                progress("(b) lone operator killed and restarted ...")
                restart = bench.restart(args.restarts)
                lost = bench.lost()
            finally:
                bench.stop()
        steady = len(bench.pods.steady_uids)
        print(summary("(a) failover to the hot standby", failover))
        print(summary("(b) restart of a lone operator", restart))
        print(
            f"duplicate pods (two live pods of one selection and model): {bench.pods.duplicates}"
            f"{' ' + str(bench.pods.duplicate_names) if bench.pods.duplicates else ''}; "
            f"pods of the untouched task created: {steady} (1: never rewritten); "
            f"lost selections: {len(lost)}{' ' + str(lost) if lost else ''}"
        )
        print_tracebacks(sorted(workdir.glob("operator-*.log")))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
