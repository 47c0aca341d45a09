"""`fovea-models up`: the whole system on this machine, in the foreground.

Starts the local cluster, applies the CRDs and a catalog with its selections,
then runs the operator and the API (port 3001) as child processes. Ctrl-C (or
the exit of any part, which is reported by name) stops everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fovea.kube import apply_crds

# Children get SIGTERM if this process dies without cleaning up (kill -9).
_SETPRIV = shutil.which("setpriv")
_DIE_WITH_US = [_SETPRIV, "--pdeathsig", "TERM", "--"] if _SETPRIV else []
MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
CATALOGS = {"demo": "demo.yaml", "default": "default.yaml"}


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
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
    children: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        _apply(kubeconfig, _catalog_manifest(args.catalog), args.namespace)
        command = [*_DIE_WITH_US, sys.executable, "-P", "-m", "fovea.cli"]
        # Own sessions: Ctrl-C reaches only this process, which stops them in order.
        children["operator"] = subprocess.Popen(
            [*command, "operator"], env=env, start_new_session=True
        )
        children["api"] = subprocess.Popen(
            [
                *command,
                "api",
                "--host",
                args.host,
                "--port",
                str(args.port),
                "--namespace",
                args.namespace,
            ],
            env=env,
            start_new_session=True,
        )
        print(
            f"fovea-models: API on http://{args.host}:{args.port}/api/models "
            f"(KUBECONFIG={kubeconfig}); Ctrl-C stops everything",
            file=sys.stderr,
        )
        failure = _wait(cluster, children, stop)
    except KeyboardInterrupt:
        failure = None
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in children.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.stop()
    if failure:
        print(f"fovea-models: stopped because {failure}", file=sys.stderr)
        return 1
    return 0


def _catalog_manifest(choice: str) -> Path:
    if choice in CATALOGS:
        return MANIFESTS / "catalog" / CATALOGS[choice]
    path = Path(choice)
    if not path.is_file():
        raise SystemExit(f"fovea-models up: catalog {choice!r} is neither demo, default nor a file")
    return path


def _apply(kubeconfig: str, catalog: Path, namespace: str) -> None:
    """CRDs first (and established), then the catalog and its selections."""
    apply_crds(kubeconfig)
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    if catalog.suffix in (".yaml", ".yml") and "kind:" not in catalog.read_text():
        # A models.yaml: import it into a manifest first (errors name the file and option).
        rendered = subprocess.run(
            [sys.executable, "-P", "-m", "fovea.cli", "catalog", "import", str(catalog)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        subprocess.run(
            ["kubectl", "apply", "-n", namespace, "-f", "-"],
            input=rendered,
            env=env,
            check=True,
            text=True,
        )
        return
    subprocess.run(["kubectl", "apply", "-n", namespace, "-f", str(catalog)], env=env, check=True)


def _wait(
    cluster: object, children: dict[str, subprocess.Popen[bytes]], stop: threading.Event
) -> str | None:
    while not stop.is_set():
        for name, proc in children.items():
            code = proc.poll()
            if code is not None:
                return f"the {name} exited with code {code}"
        failure = getattr(cluster, "failure", None)
        if failure:
            return str(failure)
        time.sleep(0.5)
    return None
