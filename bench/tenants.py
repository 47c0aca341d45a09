"""Benchmark: one tenant's refusals never slow another's model switch.

Prints, from one run on the local cluster (simulated GPUs; the node agent
runs the model pods, so Ready means the model really loaded):
1. select -> Ready p50 and p95 in `default`, alone;
2. the same while another namespace refuses every write: a ResourceQuota
   that allows no pods, service accounts, roles, role bindings or Events,
   with a catalog and `--refused` selections that all want pods;
3. the ratio of the two medians (target: within 1.2x), the same for
   select -> planned (the operator's status names the new pod: the
   operator's own share, without the model's load time), and the
   operator's write failures in the refusing namespace (its own metric).

Each switch alternates the selection between two small models; the clock
stops when the selection's status says Ready with the new model. The two
conditions alternate in blocks of `--block` switches (the refusing
selections are created, then deleted), so a machine whose load drifts
(other work on its CPUs) weighs on both alike; each block with the refusals
starts with them fresh, their most frequent retries included.

Usage: .venv/bin/python -P bench/tenants.py [--switches 21] [--block 3] [--refused 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from fovea.localcluster.cluster import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import (
    PYTHON,
    Child,
    bench_parser,
    catalog_body,
    cluster_clients,
    free_port,
    local_cluster,
    percentile,
    random_weights_option,
    selection_body,
    stack_env,
)

HOME, REFUSING = "default", "noplace"
TASK = "det"
READY_TIMEOUT_S = 180.0
TARGET_RATIO = 1.2


def catalog(tasks: list[str]) -> dict[str, Any]:
    options = {
        "one": random_weights_option(vram_gb=1.0),
        "two": random_weights_option(vram_gb=1.5),
    }
    return catalog_body(
        {
            "tasks": {t: {"options": options} for t in tasks},
            "inference": {"offloadThreshold": 0.8, "warmupOnStartup": True},
        }
    )


def selection(task: str, model: str) -> dict[str, Any]:
    return selection_body(selection_name(task), task, model)


def status(custom: client.CustomObjectsApi, ns: str, task: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(
        c.GROUP, c.VERSION, ns, c.SELECTION_PLURAL, selection_name(task)
    )
    return dict(obj.get("status") or {})


def switch(custom: client.CustomObjectsApi, model: str) -> tuple[float, float]:
    """Seconds from the spec change to the operator's plan for `model`, and to Ready."""
    start = time.monotonic()
    planned: float | None = None
    custom.patch_namespaced_custom_object(
        c.GROUP,
        c.VERSION,
        HOME,
        c.SELECTION_PLURAL,
        selection_name(TASK),
        {"spec": {"model": model}},
    )
    while time.monotonic() - start < READY_TIMEOUT_S:
        now = status(custom, HOME, TASK)
        if planned is None and now.get("model") == model and now.get("pod"):
            planned = time.monotonic() - start
        if now.get("phase") == "Ready" and now.get("model") == model:
            ready = time.monotonic() - start
            return (ready if planned is None else planned), ready
        time.sleep(0.05)
    raise TimeoutError(f"{model} not Ready after {READY_TIMEOUT_S:.0f}s: {now}")


def switches(custom: client.CustomObjectsApi, n: int) -> list[tuple[float, float]]:
    current = status(custom, HOME, TASK).get("model")
    out = []
    for _ in range(n):
        current = "two" if current == "one" else "one"
        out.append(switch(custom, current))
    return out


def refusing(custom: client.CustomObjectsApi, n: int, on: bool) -> None:
    """Create (on) or delete (off) the refusing namespace's selections."""
    for i in range(n):
        task = f"t{i:02d}"
        if on:
            custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, REFUSING, c.SELECTION_PLURAL, selection(task, "one")
            )
        else:
            custom.delete_namespaced_custom_object(
                c.GROUP, c.VERSION, REFUSING, c.SELECTION_PLURAL, selection_name(task)
            )


def refusing_namespace(core: client.CoreV1Api, custom: client.CustomObjectsApi, n: int) -> None:
    """A namespace whose ResourceQuota refuses every object the operator would create there."""
    core.create_namespace({"metadata": {"name": REFUSING}})
    hard = {
        "pods": "0",
        "count/serviceaccounts": "0",
        "count/roles.rbac.authorization.k8s.io": "0",
        "count/rolebindings.rbac.authorization.k8s.io": "0",
        "count/events": "0",
    }
    core.create_namespaced_resource_quota(
        REFUSING, {"metadata": {"name": REFUSING}, "spec": {"hard": hard}}
    )
    deadline = time.monotonic() + 60
    while not core.read_namespaced_resource_quota(REFUSING, REFUSING).status.hard:
        if time.monotonic() > deadline:
            raise TimeoutError("the ResourceQuota controller never set the quota's status")
        time.sleep(0.1)
    tasks = [f"t{i:02d}" for i in range(n)]
    custom.create_namespaced_custom_object(
        c.GROUP, c.VERSION, REFUSING, c.CATALOG_PLURAL, catalog(tasks)
    )


def failures(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fovea_operator_write_failures_total{")
        and f'namespace="{REFUSING}"' in line
    )


def summary(label: str, values: list[float]) -> str:
    return (
        f"{label}: select -> Ready over {len(values)} switches: "
        f"p50 {statistics.median(values) * 1000:.0f} ms, "
        f"p95 {percentile(values, 0.95) * 1000:.0f} ms"
    )


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--switches", type=int, default=21, help="per condition")
    parser.add_argument("--block", type=int, default=3, help="switches per block")
    parser.add_argument("--refused", type=int, default=10, help="selections in the refusing ns")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="fovea-bench-tenants-"))
    with local_cluster(state) as cluster:
        measure(cluster, state, args)
    return 0


def measure(cluster: LocalCluster, state: Path, args: argparse.Namespace) -> None:
    """Both conditions, printed; the operator started here."""
    with ExitStack() as own:
        kubeconfig, _, core, custom = cluster_clients(cluster)
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, HOME, c.CATALOG_PLURAL, catalog([TASK])
        )
        port = free_port()
        env = stack_env(kubeconfig, HOME, FOVEA_OPERATOR_METRICS_PORT=str(port))
        # cluster-wide: every namespace
        own.enter_context(Child([*PYTHON, "operator"], env, state / "operator.log", 30))
        custom.create_namespaced_custom_object(
            c.GROUP, c.VERSION, HOME, c.SELECTION_PLURAL, selection(TASK, "one")
        )
        switch(custom, "one")  # warm-up: the first load imports torch from a cold cache
        refusing_namespace(core, custom, args.refused)
        alone: list[tuple[float, float]] = []
        shared: list[tuple[float, float]] = []
        while len(alone) < args.switches or len(shared) < args.switches:
            for on, into in ((False, alone), (True, shared)):
                if len(into) >= args.switches:
                    continue
                if on:
                    refusing(custom, args.refused, on=True)
                    time.sleep(0.5)  # the first refusals are under way
                into.extend(switches(custom, min(args.block, args.switches - len(into))))
                if on:
                    refusing(custom, args.refused, on=False)
                    time.sleep(0.5)
        label = f"beside a namespace refusing every write ({args.refused} selections)"
        print(summary("alone", [r for _, r in alone]))
        print(summary(label, [r for _, r in shared]))
        ratio = statistics.median(r for _, r in shared) / statistics.median(r for _, r in alone)
        verdict = "ok" if ratio <= TARGET_RATIO else "over target"
        print(f"ratio of medians: {ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
        plan_alone = statistics.median(plan for plan, _ in alone)
        plan_shared = statistics.median(plan for plan, _ in shared)
        print(
            f"select -> planned (the operator's share) p50: alone {plan_alone * 1000:.0f} ms, "
            f"beside the refusals {plan_shared * 1000:.0f} ms ({plan_shared / plan_alone:.2f}x)"
        )
        print(f"write failures counted in {REFUSING}: {failures(port):.0f}")
        stalls = (state / "operator.log").read_text(errors="replace").count("pass failed")
        print(f"failed passes in the operator's log: {stalls}")


if __name__ == "__main__":
    sys.exit(main())
