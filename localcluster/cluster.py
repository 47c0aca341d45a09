"""`LocalCluster`: a real Kubernetes control plane, nodes and node agent on this machine.

    with LocalCluster(state_dir, gpus="2x24GiB,1x80GiB") as cluster:
        subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig, "get", "nodes"])

`start()` builds the binaries if needed (once per machine), generates the PKI
(once per state directory), starts etcd, kube-apiserver,
kube-controller-manager and kube-scheduler on free loopback ports, registers
the nodes, starts the node agent and returns when all of it is ready.
`stop()` ends everything it started. A component that exits on its own is
started again, as a kubelet restarts a static pod: after 1 s, then 2, 4, ...
up to 30 s, the count forgotten once it has run for a minute (etcd's data is
on disk; the ports stay the same). The node agent's pods keep running through
it: the data plane outlives the control plane. Used by `fovea-models cluster
up`, by the test fixtures and by `fovea-models up`.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil

from fovea.domain.backoff import Backoff
from fovea.localcluster import controlplane as cp
from fovea.localcluster.agent import NodeAgent
from fovea.localcluster.binaries import ensure_binaries, pinned_version
from fovea.localcluster.kubeconfig import kubeconfig, write_kubeconfig
from fovea.localcluster.nodes import NodePlan, plan_nodes, resolve_gpu_spec
from fovea.localcluster.nvml import detect_gpus
from fovea.localcluster.pki import Pki, ensure_pki
from fovea.localcluster.podrunner import AgentContext
from fovea.localcluster.provisioner import LocalPathProvisioner
from fovea.localcluster.rest import ApiError, Rest
from fovea.localcluster.settings import child_environment
from fovea.localcluster.spawn import Spawner, tail, terminate
from fovea.localcluster.state import StateDir, default_state_dir

DEFAULT_START_TIMEOUT_S = 120.0
COMPONENT_STOP_GRACE_S = 10.0
MONITOR_PERIOD_S = 0.25
POD_LOG_RETENTION_DAYS = 7
# A crashed component's restarts, as the kubelet's: doubling up to a cap, forgotten
# once it has run this long without exiting (as `fovea-models up` restarts its children).
RESTART_BACKOFF_S = (1.0, 30.0)
RESTART_RESET_AFTER_S = 60.0


def _stderr(message: str) -> None:
    print(f"fovea-models cluster: {message}", file=sys.stderr, flush=True)


class LocalCluster:
    """One local cluster, owned by this process while it runs."""

    def __init__(
        self,
        state_dir: Path | None = None,
        gpus: str = "auto",
        *,
        log: Callable[[str], None] = _stderr,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        self.state = StateDir((state_dir or default_state_dir()).expanduser().resolve())
        self.gpus = gpus
        self._log = log
        self.start_timeout_s = start_timeout_s
        self.version = pinned_version()
        self.ports: cp.Ports | None = None
        # Planned now, so a bad --gpus spec fails before anything starts (NodeSpecError).
        self.nodes: list[NodePlan] = plan_nodes(
            resolve_gpu_spec(gpus, detect_gpus() if _wants_nvml(gpus) else []),
            cpu=os.cpu_count() or 1,
            memory_bytes=psutil.virtual_memory().total,
        )
        # Why the cluster stopped by itself ("<component>: <what happened>"); a component
        # that exits is restarted instead (`restarts`), so nothing sets it today.
        self.failure: str | None = None
        self.restarts: dict[str, int] = {}  # component name -> restarts after crashes
        self._components: list[cp.Component] = []
        self._spawner: Spawner | None = None
        self._agent: NodeAgent | None = None
        self._provisioner: LocalPathProvisioner | None = None
        self._rest: Rest | None = None
        self._lock_handle: IO[str] | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    # --- what users read ------------------------------------------------------------------

    def log(self, message: str) -> None:
        """Say `message` through the log callback, and keep it in `<state>/cluster.log`."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            with self.state.cluster_log.open("a") as handle:
                handle.write(f"{stamp} {message}\n")
        except OSError:
            pass  # the state directory may be gone after `down --purge`
        self._log(message)

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate in system:masters)."""
        return self.state.kubeconfig

    @property
    def server(self) -> str:
        if self.ports is None:
            raise RuntimeError("the cluster has not been started")
        return f"https://127.0.0.1:{self.ports.apiserver}"

    # --- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything and return once the cluster is ready; on failure stop all and raise."""
        self.state.create()
        self._lock_handle = self.state.lock()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        began = time.monotonic()
        deadline = began + self.start_timeout_s
        bin_dir = ensure_binaries()
        self._prune_pod_logs()
        pki = ensure_pki(self.state.pki)
        self.ports = ports = cp.Ports.allocate(self._previous_ports())
        configs = self._write_kubeconfigs(pki)
        self._spawner = Spawner()
        self._write_state(ready=False)
        urls = cp.health_urls(ports)
        etcd = self._launch("etcd", cp.etcd_args(bin_dir, self.state.etcd_data, ports), urls)
        apiserver = self._launch(
            "kube-apiserver",
            cp.apiserver_args(bin_dir, pki, self.state.pki / "apiserver-certs", ports),
            urls,
            ca_file=pki.ca_cert,
        )
        etcd.wait_healthy(deadline)
        apiserver.wait_healthy(deadline)
        controller_manager = self._launch(
            "kube-controller-manager",
            cp.controller_manager_args(bin_dir, pki, configs["controller-manager"], ports),
            urls,
        )
        scheduler = self._launch(
            "kube-scheduler", cp.scheduler_args(bin_dir, configs["scheduler"], ports), urls
        )
        self._rest = Rest(configs["node-agent"])
        self._agent = NodeAgent(
            AgentContext(
                rest=self._rest,
                spawner=self._spawner,
                state=self.state,
                server=self.server,
                ca_pem=pki.ca_cert.read_bytes(),
                nodes={plan.name: plan for plan in self.nodes},
                venv_bin=Path(sys.executable).parent,
                cpu=os.cpu_count() or 1,
                memory_bytes=psutil.virtual_memory().total,
                log=self.log,
            ),
            kube_version=self.version,
            pki=pki,
        )
        self._agent.start()
        self._provisioner = LocalPathProvisioner(self._rest, self.state, self.log)
        self._provisioner.start()
        controller_manager.wait_healthy(deadline)
        scheduler.wait_healthy(deadline)
        self._wait_default_service_account(deadline)
        threading.Thread(target=self._monitor, name="cluster-monitor", daemon=True).start()
        self._write_state(ready=True)
        self.log(
            f"ready in {time.monotonic() - began:.1f}s: Kubernetes {self.version} at "
            f"{self.server}, {len(self.nodes)} nodes; kubeconfig {self.kubeconfig}"
        )

    def _previous_ports(self) -> list[int]:
        recorded = self.state.read_state().get("ports") or {}
        names = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
        ports = [recorded.get(name) for name in names]
        return [p for p in ports if isinstance(p, int)] if all(ports) else []

    def _prune_pod_logs(self) -> None:
        """Logs of pods gone for a while: kept for `cluster logs` after a crash, not forever."""
        horizon = time.time() - POD_LOG_RETENTION_DAYS * 86400
        for log in [*self.state.pod_logs.glob("*.log"), *self.state.pod_logs.glob("*/*.log")]:
            if log.stat().st_mtime < horizon:
                log.unlink(missing_ok=True)
                if log.parent != self.state.pod_logs and not any(log.parent.iterdir()):
                    log.parent.rmdir()

    def _write_kubeconfigs(self, pki: Pki) -> dict[str, Path]:
        ca = pki.ca_cert.read_bytes()
        paths: dict[str, Path] = {}
        for who in ("controller-manager", "scheduler", "node-agent"):
            config = kubeconfig(
                self.server,
                ca,
                user=who,
                cert_pem=pki.client_cert(who).read_bytes(),
                key_pem=pki.client_key(who).read_bytes(),
            )
            paths[who] = write_kubeconfig(self.state.kubeconfigs / f"{who}.kubeconfig", config)
        admin = kubeconfig(
            self.server,
            ca,
            user="fovea-admin",
            cert_pem=pki.client_cert("admin").read_bytes(),
            key_pem=pki.client_key("admin").read_bytes(),
        )
        write_kubeconfig(self.kubeconfig, admin)
        return paths

    def _launch(
        self, name: str, argv: list[str], urls: dict[str, str], ca_file: Path | None = None
    ) -> cp.Component:
        assert self._spawner is not None
        log = self.state.component_log(name)
        with log.open("ab") as handle:
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            handle.write(f"--- fovea-models: starting {name} at {stamp}\n".encode())
        process = self._spawner.spawn(argv, env=_component_env(), log=log, cwd=self.state.root)
        component = cp.Component(name, process, urls[name], log, ca_file, argv=list(argv))
        self._components.append(component)
        self._write_state(ready=False)
        return component

    def _relaunch(self, old: cp.Component) -> None:
        """Start a crashed component again, on the same command line (ports, data directory)."""
        assert self._spawner is not None
        with self._stop_lock:  # never a new process once stop() has begun
            if self._stopping.is_set():
                return
            with old.log.open("ab") as handle:
                stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                handle.write(f"--- fovea-models: restarting {old.name} at {stamp}\n".encode())
            process = self._spawner.spawn(
                old.argv, env=_component_env(), log=old.log, cwd=self.state.root
            )
            new = cp.Component(
                old.name, process, old.health_url, old.log, old.ca_file, argv=old.argv
            )
            self._components[self._components.index(old)] = new
            self._write_state(ready=True)

    def _wait_default_service_account(self, deadline: float) -> None:
        """Pods are refused until the controller-manager has made `default/default`."""
        assert self._rest is not None
        while True:
            try:
                self._rest.get("/api/v1/namespaces/default/serviceaccounts/default")
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
            self._check_components()
            if time.monotonic() > deadline:
                raise cp.ComponentFailed(
                    "kube-controller-manager", "the default service account never appeared"
                )
            time.sleep(0.1)

    # --- run ------------------------------------------------------------------------------

    def _check_components(self) -> None:
        for component in self._components:
            code = component.exited()
            if code is not None:
                raise cp.ComponentFailed(component.name, f"exited with code {code}")

    def _monitor(self) -> None:
        """Restart each component that exits on its own, with backoff (see the module doc)."""
        backoffs = {c.name: Backoff(*RESTART_BACKOFF_S) for c in self._components}
        due: dict[str, float] = {}  # a crashed component's name -> when it starts again
        while not self._stopping.wait(MONITOR_PERIOD_S):
            now = time.monotonic()
            for component in list(self._components):
                name = component.name
                if name in due:
                    if now >= due[name]:
                        del due[name]
                        self._restart(component, backoffs[name], due)
                    continue
                code = component.exited()
                if code is None or self._stopping.is_set():
                    continue
                if now - component.started >= RESTART_RESET_AFTER_S:
                    backoffs[name].reset()
                delay = backoffs[name].next()
                due[name] = now + delay
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.log(
                    f"{name}: exited with code {code}; restarting it in {delay:.0f}s "
                    f"(restart {self.restarts[name]}). Last lines of {component.log}:\n"
                    f"{tail(component.log)}"
                )

    def _restart(self, component: cp.Component, backoff: Backoff, due: dict[str, float]) -> None:
        try:
            self._relaunch(component)
        except Exception as exc:  # e.g. its binary gone: try again later, never give up
            delay = backoff.next()
            due[component.name] = time.monotonic() + delay
            self.log(f"{component.name}: could not restart ({exc!r}); trying again in {delay:.0f}s")
            return
        self.log(f"{component.name}: restarted (restart {self.restarts.get(component.name, 0)})")

    def wait(self, until: threading.Event | None = None) -> str | None:
        """Block until `until` is set or the cluster stops by itself; return the failure."""
        while not self._stopped.is_set():
            if until is not None and until.wait(0.2):
                break
            if until is None:
                self._stopped.wait(1.0)
        return self.failure

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the pods' processes, then the components in reverse order; idempotent."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stopping.set()
            if self._agent is not None:
                self._agent.stop()
            if self._provisioner is not None:
                self._provisioner.stop()
            # Open watches would hold the API server's graceful shutdown.
            if self._rest is not None:
                self._rest.close()
            for component in reversed(self._components):
                terminate(component.process, COMPONENT_STOP_GRACE_S)
            if self._spawner is not None:
                self._spawner.close()
            if self.state.root.exists():
                self._write_state(ready=False, running=False)
            if self._lock_handle is not None:
                self._lock_handle.close()
                self._lock_handle = None
            self._stopped.set()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state file -----------------------------------------------------------------------

    def _write_state(self, ready: bool, running: bool = True) -> None:
        components = {
            c.name: {"pid": c.process.pid, "create_time": _create_time(c.process.pid)}
            for c in self._components
            if running and c.exited() is None
        }
        self.state.write_state(
            {
                "pid": os.getpid() if running else None,
                "pid_create_time": _create_time(os.getpid()) if running else None,
                "ready": ready and running,
                "version": self.version,
                "server": self.server if self.ports else None,
                "kubeconfig": str(self.kubeconfig),
                "ports": self.ports.as_dict() if self.ports else {},
                "components": components,
                "nodes": [
                    {
                        "name": plan.name,
                        "gpus": plan.gpus.count if plan.gpus else 0,
                        "gpuMemoryMiB": plan.gpus.memory_mib if plan.gpus else 0,
                        "product": plan.gpus.product if plan.gpus else "",
                        "simulated": plan.simulated_gpu,
                    }
                    for plan in self.nodes
                ],
                "failure": self.failure,
                "restarts": dict(self.restarts),
                "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )


def _wants_nvml(gpus: str) -> bool:
    return gpus.strip().lower() in ("auto", "real", "nvml")


def _component_env() -> dict[str, str]:
    # Components must not pick up a user's kubeconfig or proxy settings.
    drop = {"KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}
    return child_environment(drop.__contains__)


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None
