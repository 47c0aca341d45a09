"""`fovea-models cluster up|down|status|kubeconfig|logs|build`: the local cluster's commands.

`up` runs in the foreground until Ctrl-C or SIGTERM (or a component crash,
reported by name); `up --detach` starts the same supervisor in the background
and returns once the cluster is ready; `down` stops a detached one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from fovea.localcluster.state import StateDir, default_state_dir

DETACH_TIMEOUT_S = 600.0  # the first start may build the binaries
DOWN_TIMEOUT_S = 60.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `cluster` subcommands to `parser`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the cluster keeps etcd data, PKI, kubeconfig and logs "
        "(default: $FOVEA_STATE_DIR or ~/.local/state/fovea-models/cluster)",
    )
    sub = parser.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")

    up = sub.add_parser("up", parents=[common], help="start the cluster (foreground by default)")
    up.add_argument(
        "--gpus",
        default="auto",
        help="GPU nodes: 'auto' (real GPUs via NVML, else 2x24GiB,1x80GiB simulated), 'real', "
        "'none', or a list of [COUNTx]SIZE[:PRODUCT], one per node, e.g. 2x24GB,1x80GB "
        "(GB = GiB = 1024^3 bytes)",
    )
    up.add_argument(
        "--detach", action="store_true", help="run in the background; return when ready"
    )
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.add_argument(
        "--container-node",
        action="store_true",
        help="also a node that runs images as containers (a kubelet with containerd; "
        "needs root: docs/images.md)",
    )

    down = sub.add_parser("down", parents=[common], help="stop a detached cluster")
    down.add_argument("--purge", action="store_true", help="also delete the state directory")

    status = sub.add_parser("status", parents=[common], help="components, ports and nodes")
    status.add_argument("--json", action="store_true", help="print the state file as JSON")

    sub.add_parser("kubeconfig", parents=[common], help="print the admin kubeconfig's path")

    logs = sub.add_parser("logs", parents=[common], help="print a pod's (or component's) log")
    logs.add_argument("pod", nargs="?", help="pod name")
    logs.add_argument("-n", "--namespace", default="default")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-c", "--container", help="an init container's log instead")
    logs.add_argument(
        "--component", help="a control-plane component instead: etcd, kube-apiserver, ..."
    )

    sub.add_parser("build", help="build (or find) the control-plane binaries; print their dir")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action; returns the exit status."""
    state = StateDir(
        (getattr(args, "state_dir", None) or default_state_dir()).expanduser().resolve()
    )
    actions = {
        "up": _up,
        "down": _down,
        "status": _status,
        "kubeconfig": _kubeconfig,
        "logs": _logs,
        "build": _build,
    }
    return actions[args.cluster_command](args, state)


def _fail(message: str) -> int:
    print(f"fovea-models cluster: {message}", file=sys.stderr)
    return 1


# --- up -------------------------------------------------------------------------------------


def _up(args: argparse.Namespace, state: StateDir) -> int:
    if state.is_locked():
        pid = state.read_state().get("pid", "?")
        return _fail(f"already running from {state.root} (supervisor pid {pid})")
    if args.detach:
        return _up_detached(args, state)
    return _up_foreground(args, state)


def _up_foreground(args: argparse.Namespace, state: StateDir) -> int:
    from fovea.localcluster.binaries import BinariesUnavailable
    from fovea.localcluster.cluster import LocalCluster
    from fovea.localcluster.controlplane import ComponentFailed
    from fovea.localcluster.nodes import NodeSpecError
    from fovea.localcluster.state import AlreadyRunning

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # Ignore repeats: the first signal already started an orderly stop.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    try:
        cluster = LocalCluster(state.root, gpus=args.gpus, start_timeout_s=args.timeout)
    except NodeSpecError as exc:
        return _fail(str(exc))
    from fovea.localcluster.containernode import ContainerNode, ContainerNodeUnavailable

    node: ContainerNode | None = None
    try:
        cluster.start()
        if args.container_node:
            node = ContainerNode(cluster.state, cluster.server, log=cluster.log)
            node.start()
        print(f"kubeconfig: {cluster.kubeconfig}", flush=True)
        print(f"export KUBECONFIG={cluster.kubeconfig}   # Ctrl-C stops the cluster", flush=True)
        failure = cluster.wait()
    except KeyboardInterrupt:
        cluster.log("stopping")
        if node is not None:
            node.stop()
        cluster.stop()
        return 0 if cluster.failure is None else 1
    except (
        NodeSpecError,
        AlreadyRunning,
        BinariesUnavailable,
        ComponentFailed,
        ContainerNodeUnavailable,
    ) as exc:
        return _fail(str(exc))
    finally:
        if node is not None:
            node.stop()
        cluster.stop()
    if failure:
        return _fail(f"stopped because {failure}")
    return 0


def _up_detached(args: argparse.Namespace, state: StateDir) -> int:
    state.root.mkdir(parents=True, exist_ok=True)
    # This module's own entry point: the supervisor needs nothing else of the CLI.
    argv = [
        sys.executable, "-P", "-m", "fovea.localcluster.cli", "up", "--state-dir", str(state.root),
        "--gpus", args.gpus, "--timeout", str(args.timeout),
        *(["--container-node"] if args.container_node else []),
    ]  # fmt: skip
    with state.supervisor_log.open("ab") as log:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
    wait_s = max(args.timeout, DETACH_TIMEOUT_S)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        current = state.read_state()
        if current.get("pid") == child.pid and current.get("ready"):
            print(f"local cluster running (supervisor pid {child.pid}); "
                  f"kubeconfig: {state.kubeconfig}")  # fmt: skip
            return 0
        if child.poll() is not None:
            from fovea.localcluster.spawn import tail

            return _fail(f"the cluster did not start; {state.supervisor_log}:\n"
                         f"{tail(state.supervisor_log)}")  # fmt: skip
        time.sleep(0.1)
    child.terminate()
    return _fail(f"not ready after {wait_s:.0f}s; see {state.supervisor_log}")


# --- down -----------------------------------------------------------------------------------


def _same_process(pid: object, create_time: object) -> bool:
    """Whether `pid` still names the process recorded (not a reused pid)."""
    import psutil

    if not isinstance(pid, int):
        return False
    try:
        process = psutil.Process(pid)
        return create_time is None or abs(process.create_time() - float(str(create_time))) < 1.0
    except psutil.Error:
        return False


def _down(args: argparse.Namespace, state: StateDir) -> int:
    from fovea.localcluster.spawn import wait_gone

    recorded = state.read_state()
    pid = recorded.get("pid")
    if state.is_locked() and _same_process(pid, recorded.get("pid_create_time")):
        assert isinstance(pid, int)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DOWN_TIMEOUT_S
        while state.is_locked() and time.monotonic() < deadline:
            time.sleep(0.1)
        if state.is_locked() or wait_gone([pid], max(1.0, deadline - time.monotonic())):
            print(f"supervisor {pid} did not stop in {DOWN_TIMEOUT_S:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone([pid], 10)
        print(f"local cluster stopped ({state.root})")
    else:
        print(f"no local cluster running from {state.root}")
    # Whatever survived a killed supervisor (its children die with it, but be sure).
    leftovers = [
        int(info["pid"])
        for info in (recorded.get("components") or {}).values()
        if _same_process(info.get("pid"), info.get("create_time"))
    ]
    for leftover in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leftover, signal.SIGKILL)
    wait_gone(leftovers, 10)
    if args.purge and state.root.exists():
        shutil.rmtree(state.root)
        print(f"removed {state.root}")
    return 0


# --- status, kubeconfig, logs, build --------------------------------------------------------


def _status(args: argparse.Namespace, state: StateDir) -> int:
    recorded = state.read_state()
    running = state.is_locked()
    if args.json:
        print(json.dumps({**recorded, "running": running}, indent=2, sort_keys=True))
        return 0 if running else 1
    if not running:
        print(f"not running (state directory {state.root})")
        return 1
    ready = "ready" if recorded.get("ready") else "starting"
    print(
        f"local cluster {ready}: Kubernetes {recorded.get('version')} at {recorded.get('server')}"
    )
    print(f"supervisor pid {recorded.get('pid')}; kubeconfig {recorded.get('kubeconfig')}")
    ports = recorded.get("ports") or {}
    components = recorded.get("components") or {}
    print(f"\n{'COMPONENT':<26}{'PID':>8}{'PORT':>8}  STATE")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        info = components.get(name) or {}
        alive = _same_process(info.get("pid"), info.get("create_time"))
        print(f"{name:<26}{info.get('pid', '-')!s:>8}{ports.get(name, '-')!s:>8}  "
              f"{'running' if alive else 'not running'}")  # fmt: skip
    print(f"\n{'NODE':<16}{'STATUS':<10}{'GPUS':>5}{'GPU MEMORY':>12}  PRODUCT")
    for node in _live_nodes(state, recorded):
        print(f"{node[0]:<16}{node[1]:<10}{node[2]:>5}{node[3]:>12}  {node[4]}")
    return 0


def node_row(item: dict[str, Any]) -> tuple[str, ...]:
    """A Node as `cluster status` lists it: physical GPUs (not time-slice replicas), GB each."""
    from fovea.domain import constants as c
    from fovea.domain.conditions import ConditionStatus, ConditionType
    from fovea.domain.units import MIB, format_bytes
    from fovea.localcluster.nodes import TIME_SLICING_REPLICAS

    labels = item["metadata"].get("labels", {})
    conditions = item.get("status", {}).get("conditions", [])
    ready = next((x["status"] for x in conditions if x["type"] == ConditionType.READY), None)
    # The device plugin advertises each GPU TIME_SLICING_REPLICAS times; GPU feature
    # discovery's count label says how many there are.
    advertised = int(item.get("status", {}).get("capacity", {}).get(c.RESOURCE_GPU, "0"))
    gpus = labels.get(c.NODE_LABEL_GPU_COUNT) or str(advertised // TIME_SLICING_REPLICAS)
    memory = labels.get(c.NODE_LABEL_GPU_MEMORY_MIB)
    product = labels.get(c.NODE_LABEL_GPU_PRODUCT, "-")
    if labels.get(c.NODE_LABEL_SIMULATED) == "true":
        product += " (simulated)"
    return (
        item["metadata"]["name"],
        "Ready" if ready == ConditionStatus.TRUE else "NotReady",
        gpus,
        format_bytes(int(memory) * MIB) if memory else "-",
        product,
    )


def _live_nodes(state: StateDir, recorded: dict[str, object]) -> list[tuple[str, ...]]:
    """Nodes as the API server has them (falling back to the state file if it won't answer)."""
    from fovea.domain.units import MIB, format_bytes
    from fovea.localcluster.rest import Rest

    try:
        rest = Rest(state.kubeconfig, pool_size=1)
        items = rest.get("/api/v1/nodes").get("items", [])
        rest.close()
    except Exception as exc:  # status must still print what it knows
        print(f"(API server not answering: {exc})")
        nodes = recorded.get("nodes")
        return [
            (
                str(n["name"]),
                "?",
                str(n["gpus"]),
                format_bytes(int(n["gpuMemoryMiB"]) * MIB),
                str(n["product"]),
            )
            for n in (nodes if isinstance(nodes, list) else [])
        ]
    return [node_row(item) for item in items]


def _kubeconfig(args: argparse.Namespace, state: StateDir) -> int:
    if not state.kubeconfig.exists():
        return _fail(f"no kubeconfig in {state.root}: run `fovea-models cluster up` first")
    print(state.kubeconfig)
    return 0


def _logs(args: argparse.Namespace, state: StateDir) -> int:
    if args.component:
        path = state.component_log(args.component)
        if not path.exists():
            return _fail(f"no log for component {args.component!r} in {state.logs}")
    elif args.pod:
        pattern = f"{args.namespace}_{args.pod}_*" + (
            f"/{args.container}.log" if args.container else ".log"
        )
        candidates = sorted(state.pod_logs.glob(pattern), key=lambda p: p.stat().st_mtime)
        if not candidates:
            return _fail(f"no log for pod {args.namespace}/{args.pod} in {state.pod_logs}")
        path = candidates[-1]
    else:
        return _fail("name a pod (POD [-n NAMESPACE]) or --component")
    with path.open("rb") as handle:
        sys.stdout.buffer.write(handle.read())
        sys.stdout.flush()
        while args.follow:
            try:
                chunk = handle.read()
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                break
    return 0


def _build(args: argparse.Namespace, state: StateDir) -> int:
    from fovea.localcluster.binaries import BinariesUnavailable, ensure_binaries

    started = time.monotonic()
    try:
        directory = ensure_binaries()
    except BinariesUnavailable as exc:
        return _fail(str(exc))
    print(directory)
    print(f"({time.monotonic() - started:.1f}s)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m fovea.localcluster.cli ACTION ...`: the same commands, standalone."""
    parser = argparse.ArgumentParser(prog="fovea-models cluster", description=__doc__)
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
