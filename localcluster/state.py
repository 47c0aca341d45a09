"""The state directory of one local cluster: its layout, its state file and its lock.

Everything one cluster owns lives under one directory, so two clusters with
different state directories share nothing (ports are chosen free at start
and recorded here). Layout::

    state.json         supervisor pid, ready flag, ports, component pids, nodes
    lock               held (flock) by the running supervisor: one per directory
    kubeconfig         admin kubeconfig (what `cluster kubeconfig` prints)
    pki/               CA, serving and client certs, service-account keys
    etcd/              etcd data: objects survive a restart
    kubeconfigs/       the components' own kubeconfigs
    cluster.log        what the supervisor said (starts, crashes, node agent errors)
    logs/<component>.log, logs/pods/<ns>_<pod>_<uid>.log
    logs/pods/<ns>_<pod>_<uid>/<container>.log   an init container's log
    pods/<uid>/        a pod process's working directory, kubeconfig, emptyDir volumes
    nodes/<node>/hostpath/   each node's own host filesystem (hostPath volumes)
    volumes/           the local-path provisioner's PersistentVolumes
    supervisor.log     output of a detached (`--detach`) supervisor
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fovea.localcluster.settings import get_settings


def default_state_dir() -> Path:
    """`$FOVEA_STATE_DIR`, else `$XDG_STATE_HOME/fovea-models/cluster` (~/.local/state/...)."""
    return get_settings().default_state_dir()


class AlreadyRunning(RuntimeError):
    """Another supervisor holds this state directory."""


@dataclass(frozen=True)
class StateDir:
    """Paths inside one cluster's state directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def kubeconfigs(self) -> Path:
        return self.root / "kubeconfigs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pod_logs(self) -> Path:
        return self.root / "logs" / "pods"

    @property
    def pods(self) -> Path:
        return self.root / "pods"

    @property
    def cluster_log(self) -> Path:
        return self.root / "cluster.log"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    def component_log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    def pod_log(self, namespace: str, name: str, uid: str) -> Path:
        return self.pod_logs / f"{namespace}_{name}_{uid}.log"

    def container_log(self, namespace: str, name: str, uid: str, container: str) -> Path:
        """The log of an init container (the pod's container writes `pod_log`)."""
        return self.pod_logs / f"{namespace}_{name}_{uid}" / f"{container}.log"

    def create(self) -> None:
        for path in (self.pki, self.etcd_data, self.kubeconfigs, self.pod_logs, self.pods):
            path.mkdir(parents=True, exist_ok=True)
        # etcd refuses a data directory others can read.
        self.etcd_data.chmod(0o700)

    def read_state(self) -> dict[str, Any]:
        """The last state written, or {} when there is none (or it is unreadable)."""
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the state file atomically (readers never see half a file)."""
        tmp = self.state_file.with_name("state.json.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def lock(self) -> IO[str]:
        """Take the directory's lock for this process's lifetime, or raise AlreadyRunning."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = self.lock_file.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            pid = self.read_state().get("pid", "?")
            raise AlreadyRunning(
                f"a local cluster is already running from {self.root} (supervisor pid {pid}); "
                "stop it with `fovea-models cluster down` or use another --state-dir"
            ) from None
        return handle

    def is_locked(self) -> bool:
        """Whether a supervisor currently holds this directory."""
        if not self.lock_file.exists():
            return False
        with self.lock_file.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
