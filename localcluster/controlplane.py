"""The control-plane components: their command lines, ports and health checks.

The argument builders are pure (paths and ports in, argv out) so the flags
can be read and tested in one place. `Component` pairs a running process with
its health URL.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fovea.localcluster.pki import Pki

SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Controllers that need a cloud or a pod network, which this cluster has neither of.
DISABLED_CONTROLLERS = (
    "cloud-node-lifecycle-controller",
    "service-lb-controller",
    "node-route-controller",
    "node-ipam-controller",
)
# DRA (resource.k8s.io/v1, GA) with devices several claims may share: the operator's dra
# mode gives each selection its own claim on a GPU the planner shares (across namespaces too)
# (fovea.domain.dra). Beta and on by default in 1.36; named so the cluster says what it needs.
FEATURE_GATES = "DRAConsumableCapacity=true"
# In start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class Ports:
    """The loopback ports of one cluster (all chosen free at start)."""

    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def allocate(cls, preferred: Sequence[int] = ()) -> Ports:
        """Five distinct free loopback ports, the `preferred` ones where still free.

        A restart keeps its earlier ports when it can, so addresses users noted
        stay valid. All sockets are held until the end, so no port is picked twice.
        """
        sockets: list[socket.socket] = []
        wanted = list(preferred)[:5]
        wanted += [0] * (5 - len(wanted))
        try:
            for port in wanted:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                # As Go's listeners do: a port whose old connections linger in
                # TIME_WAIT is free to listen on again.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            numbers = [s.getsockname()[1] for s in sockets]
        finally:
            for sock in sockets:
                sock.close()
        return cls(*numbers)

    def as_dict(self) -> dict[str, int]:
        return {
            "etcd": self.etcd,
            "etcd-peer": self.etcd_peer,
            "kube-apiserver": self.apiserver,
            "kube-controller-manager": self.controller_manager,
            "kube-scheduler": self.scheduler,
        }


def etcd_args(bin_dir: Path, data_dir: Path, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bin_dir / "etcd"),
        "--name=default",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        # A development cluster: losing the last writes on a power cut is acceptable.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_args(bin_dir: Path, pki: Pki, cert_dir: Path, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        # Without these two, a machine with no default route makes it exit or loop.
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        # pods/log: the node agent serves the kubelet's log path on each node's InternalIP.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-certificate-authority={pki.ca_cert}",
        f"--kubelet-client-certificate={pki.client_cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.client_key('apiserver-kubelet-client')}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        "--allow-privileged=true",
        # The node agent registers nodes Ready; the admission plugin would taint
        # them not-ready until the node-lifecycle controller's next pass (seconds).
        "--disable-admission-plugins=TaintNodesByCondition",
        f"--feature-gates={FEATURE_GATES}",
        "--profiling=false",
    ]


def controller_manager_args(bin_dir: Path, pki: Pki, kubeconfig: Path, ports: Ports) -> list[str]:
    controllers = ",".join(["*", *(f"-{name}" for name in DISABLED_CONTROLLERS)])
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={kubeconfig.parent / 'controller-manager-certs'}",
        "--leader-elect=false",
        f"--controllers={controllers}",
        # Token controller and per-controller service accounts (so RBAC applies to them).
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        "--use-service-account-credentials=true",
        # Signs approved CertificateSigningRequests with the cluster CA.
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        # A single-user cluster: don't throttle garbage collection and friends.
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        f"--feature-gates={FEATURE_GATES}",
        "--profiling=false",
    ]


def scheduler_args(bin_dir: Path, kubeconfig: Path, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        "--leader-elect=false",
        # A single-user cluster: binding pods (and, with DRA, writing each claim's
        # allocation) is not throttled at the client's default 50 requests/s.
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        f"--feature-gates={FEATURE_GATES}",
        "--profiling=false",
    ]


def health_urls(ports: Ports) -> dict[str, str]:
    """Where each component says it is ready."""
    return {
        "etcd": f"http://127.0.0.1:{ports.etcd}/health",
        "kube-apiserver": f"https://127.0.0.1:{ports.apiserver}/readyz",
        "kube-controller-manager": f"https://127.0.0.1:{ports.controller_manager}/healthz",
        "kube-scheduler": f"https://127.0.0.1:{ports.scheduler}/healthz",
    }


def _insecure_context() -> ssl.SSLContext:
    # The controller-manager and scheduler serve self-signed certificates; only
    # their health status is read, over loopback.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def probe(url: str, ca_file: Path | None, timeout_s: float = 2.0) -> bool:
    """True when `url` answers 200 (the API server verified against `ca_file`)."""
    context: ssl.SSLContext | None = None
    if url.startswith("https://"):
        if ca_file is None:
            context = _insecure_context()
        else:
            context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


class ComponentFailed(RuntimeError):
    """A control-plane component exited or never became healthy."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.component = name


@dataclass
class Component:
    """One running control-plane process."""

    name: str
    process: subprocess.Popen[bytes]
    health_url: str
    log: Path
    ca_file: Path | None = None
    started: float = field(default_factory=time.monotonic)
    argv: list[str] = field(default_factory=list)  # what a restart runs again

    def exited(self) -> int | None:
        return self.process.poll()

    def wait_healthy(self, deadline: float) -> None:
        """Poll the health URL until it answers, the process exits, or `deadline` passes."""
        while True:
            code = self.exited()
            if code is not None:
                raise ComponentFailed(self.name, f"exited with code {code} while starting")
            if probe(self.health_url, self.ca_file):
                return
            if time.monotonic() > deadline:
                raise ComponentFailed(self.name, f"not healthy at {self.health_url} in time")
            time.sleep(0.1)
