"""`fovea-models up`: the whole system on this machine, in the foreground.

Starts the local cluster, applies the CRDs and a catalog, creates the
catalog's default selections where none exist yet (a selection a user made is
never overwritten, so a restart keeps every choice), then runs the operator and
the API (port 3001) as child processes. A child that exits on its own is
restarted with backoff and a log line, as the kubelet restarts a container
(the local cluster restarts its own components the same way); only Ctrl-C
stops everything.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from fovea.domain import constants as c
from fovea.domain.backoff import exponential
from fovea.kube import api_client, install_cluster_scoped
from fovea.settings import child_environment

# Children get SIGTERM if this process dies without cleaning up (kill -9).
_SETPRIV = shutil.which("setpriv")
_DIE_WITH_US = [_SETPRIV, "--pdeathsig", "TERM", "--"] if _SETPRIV else []
MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
CATALOGS = {"demo": "demo.yaml", "default": "default.yaml"}
# Restart backoff of a crashed child, as the kubelet's: doubling up to a cap,
# forgotten once the child has run this long without exiting.
RESTART_BACKOFF_S = (1.0, 30.0)
RESTART_RESET_AFTER_S = 60.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=None, help="local cluster state")
    parser.add_argument(
        "--gpus", default="auto", help="GPU nodes (see `fovea-models cluster up --help`)"
    )
    parser.add_argument(
        "--catalog",
        default="demo",
        help="catalog to apply: 'demo' (tiny models that really load on a CPU, the default "
        "here), 'default' (the contract's models: their weights must be on disk), or a "
        "path to a manifest or models.yaml",
    )
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)


def run(args: argparse.Namespace) -> int:
    from fovea.localcluster.binaries import ensure_binaries, put_kubectl_on_path
    from fovea.localcluster.cluster import LocalCluster

    put_kubectl_on_path(ensure_binaries())
    cluster = LocalCluster(args.state_dir, gpus=args.gpus)
    cluster.start()
    kubeconfig = str(cluster.kubeconfig)
    env = child_environment(
        {
            "KUBECONFIG": kubeconfig,
            "PYTHONUNBUFFERED": "1",
            # One identity across restarts, as a pod's name is across container restarts:
            # a restarted operator renews its own Lease at once instead of waiting it out.
            "FOVEA_OPERATOR_IDENTITY": f"fovea-models-up@{socket.gethostname()}",
        }
    )
    command = [*_DIE_WITH_US, sys.executable, "-P", "-m", "fovea.cli"]
    children = {
        "operator": Child("operator", [*command, "operator"]),
        "api": Child("api", [*command, "api", *_api_args(args)]),
    }
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        _apply(kubeconfig, _catalog_manifest(args.catalog), args.namespace)
        for child in children.values():
            child.start(env)
        print(
            f"fovea-models: API on http://{args.host}:{args.port}/api/models "
            f"(KUBECONFIG={kubeconfig}); Ctrl-C stops everything",
            file=sys.stderr,
        )
        failure = _supervise(cluster, list(children.values()), stop, env)
    except KeyboardInterrupt:
        failure = None
    finally:
        for child in children.values():
            child.terminate()
        for child in children.values():
            child.wait_or_kill(20)
        cluster.stop()
    if failure:
        print(f"fovea-models: stopped because {failure}", file=sys.stderr)
        return 1
    return 0


def _api_args(args: argparse.Namespace) -> list[str]:
    return ["--host", args.host, "--port", str(args.port), "--namespace", args.namespace]


@dataclass
class Child:
    """One supervised child process (the operator or the API) and its restart state."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None  # when a crashed child is due to start again
    log: Callable[[str], None] = field(
        default=lambda message: print(f"fovea-models: {message}", file=sys.stderr, flush=True)
    )

    def start(self, env: Mapping[str, str]) -> None:
        # Own sessions: Ctrl-C reaches only the supervisor, which stops them in order.
        self.proc = subprocess.Popen(self.argv, env=dict(env), start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self, env: Mapping[str, str], now: float) -> None:
        """Restart the child with backoff once it has exited on its own."""
        if self.proc is None:
            return
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.log(f"restarting the {self.name} (restart {self.restarts})")
                self.start(env)
            return
        code = self.proc.poll()
        if code is None:
            return
        if now - self.started_at >= RESTART_RESET_AFTER_S:
            self.restarts = 0
        delay = restart_delay(self.restarts)
        self.restarts += 1
        self.restart_at = now + delay
        self.log(f"the {self.name} exited with code {code}; restarting it in {delay:.0f}s")

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait_or_kill(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def restart_delay(restarts: int) -> float:
    """Seconds before restart number `restarts + 1`: 1, 2, 4, ... up to the cap."""
    first, cap = RESTART_BACKOFF_S
    return exponential(restarts, first, cap)


def _catalog_manifest(choice: str) -> Path:
    if choice in CATALOGS:
        return MANIFESTS / "catalog" / CATALOGS[choice]
    path = Path(choice)
    if not path.is_file():
        raise SystemExit(f"fovea-models up: catalog {choice!r} is neither demo, default nor a file")
    return path


def _apply(kubeconfig: str, catalog: Path, namespace: str) -> None:
    """CRDs first (and established), then the catalog; selections only where missing."""
    install_cluster_scoped(kubeconfig)
    env = child_environment({"KUBECONFIG": kubeconfig})
    text = catalog.read_text()
    if catalog.suffix in (".yaml", ".yml") and "kind:" not in text:
        # A models.yaml: import it into a manifest first (errors name the file and option).
        text = subprocess.run(
            [sys.executable, "-P", "-m", "fovea.cli", "catalog", "import", str(catalog)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    catalogs, selections = split_defaults(list(yaml.safe_load_all(text)))
    subprocess.run(
        ["kubectl", "apply", "-n", namespace, "-f", "-"],
        input=yaml.safe_dump_all(catalogs, sort_keys=False),
        env=env,
        check=True,
        text=True,
    )
    created = create_missing(CustomObjectsApi(api_client(kubeconfig)), namespace, selections)
    kept = len(selections) - len(created)
    print(
        f"fovea-models: default selections created: {', '.join(created) or 'none'}"
        + (f"; {kept} existing selection(s) kept as they are" if kept else ""),
        file=sys.stderr,
    )


def split_defaults(
    docs: list[Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The manifest's objects to apply (catalogs) and those to create only (selections).

    A ModelSelection in a shipped manifest is a default: it is created when the
    task has none, and never applied over one that exists, whatever its model.
    """
    apply: list[dict[str, Any]] = []
    create_only: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        (create_only if doc.get("kind") == c.SELECTION_KIND else apply).append(doc)
    return apply, create_only


def create_missing(
    custom: CustomObjectsApi, namespace: str, selections: list[dict[str, Any]]
) -> list[str]:
    """Create each selection that does not exist yet; return the names created."""
    created = []
    for body in selections:
        name = body["metadata"]["name"]
        try:
            custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.SELECTION_PLURAL, body
            )
            created.append(name)
        except ApiException as exc:
            if exc.status != 409:  # 409: it exists, and what it says is the user's choice
                raise
    return created


def _supervise(
    cluster: object, children: list[Child], stop: threading.Event, env: Mapping[str, str]
) -> str | None:
    """Keep the children running until Ctrl-C or a control-plane failure."""
    while not stop.is_set():
        failure = getattr(cluster, "failure", None)
        if failure:
            return str(failure)
        now = time.monotonic()
        for child in children:
            child.check(env, now)
        time.sleep(0.5)
    return None
