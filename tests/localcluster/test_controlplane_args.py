"""The control-plane command lines carry the flags a loopback cluster needs."""

from __future__ import annotations

from pathlib import Path

from fovea.localcluster import controlplane as cp
from fovea.localcluster.pki import Pki

PORTS = cp.Ports(etcd=1001, etcd_peer=1002, apiserver=1003, controller_manager=1004, scheduler=1005)
BIN = Path("/bin-dir")
PKI = Pki(Path("/pki"))


def flags(argv: list[str]) -> dict[str, str]:
    pairs = (a[2:].split("=", 1) for a in argv[1:])
    return {p[0]: (p[1] if len(p) == 2 else "") for p in pairs}


def test_ports_are_distinct_and_free() -> None:
    ports = cp.Ports.allocate()
    assert len(set(ports.as_dict().values())) == 5


def test_etcd_on_loopback_without_fsync() -> None:
    f = flags(cp.etcd_args(BIN, Path("/data"), PORTS))
    assert f["listen-client-urls"] == "http://127.0.0.1:1001"
    assert f["initial-cluster"] == "default=http://127.0.0.1:1002"
    assert "unsafe-no-fsync" in f


def test_apiserver_flags() -> None:
    argv = cp.apiserver_args(BIN, PKI, Path("/certs"), PORTS)
    assert argv[0] == "/bin-dir/kube-apiserver"
    f = flags(argv)
    assert f["advertise-address"] == "127.0.0.1"
    assert f["endpoint-reconciler-type"] == "none"
    assert f["authorization-mode"] == "Node,RBAC"
    assert f["secure-port"] == "1003" and f["bind-address"] == "127.0.0.1"
    assert f["client-ca-file"] == "/pki/ca.crt"
    assert f["service-account-signing-key-file"] == "/pki/sa.key"
    assert f["service-account-key-file"] == "/pki/sa.pub"
    assert f["etcd-servers"] == "http://127.0.0.1:1001"


def test_controller_manager_flags() -> None:
    f = flags(cp.controller_manager_args(BIN, PKI, Path("/kc/cm.kubeconfig"), PORTS))
    assert f["use-service-account-credentials"] == "true"
    assert f["leader-elect"] == "false"
    assert f["root-ca-file"] == "/pki/ca.crt"
    assert f["service-account-private-key-file"] == "/pki/sa.key"
    controllers = f["controllers"].split(",")
    assert controllers[0] == "*" and "-cloud-node-lifecycle-controller" in controllers
    assert f["secure-port"] == "1004"


def test_scheduler_flags() -> None:
    f = flags(cp.scheduler_args(BIN, Path("/kc/s.kubeconfig"), PORTS))
    assert f["leader-elect"] == "false" and f["secure-port"] == "1005"
    assert f["bind-address"] == "127.0.0.1"
