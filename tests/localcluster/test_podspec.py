"""What the node agent derives from a pod spec: env, $(VAR), command, probes, restarts."""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fovea.localcluster import podspec
from fovea.localcluster.podspec import ContainerConfigError, Probe

POD: dict[str, Any] = {
    "metadata": {
        "name": "web-1",
        "namespace": "ns1",
        "uid": "u-1",
        "labels": {"app": "web"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "fovea-gpu-0", "serviceAccountName": "sa1"},
}
OBJECTS: dict[tuple[str, str, str], dict[str, str]] = {
    ("secret", "ns1", "creds"): {"token": "s3cret"},
    ("configmap", "ns1", "settings"): {"mode": "fast", "level": "3"},
}


def lookup(kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
    return OBJECTS.get((kind, namespace, name))


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return podspec.container_env(POD, container, lookup, pod_ip="127.0.0.1", cpu=2, memory=2**30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(PORT)", "8080"),
        ("--port=$(PORT) --x", "--port=8080 --x"),
        ("$$(PORT)", "$(PORT)"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(PORT", "$(PORT"),
        ("a$b$", "a$b$"),
        ("$(A)$(B)", "12"),
        ("", ""),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert podspec.expand(text, {"PORT": "8080", "A": "1", "B": "2"}) == expected


def test_env_values_refs_and_expansion_in_order() -> None:
    container = {
        "env": [
            {"name": "A", "value": "x"},
            {"name": "B", "value": "$(A)-y"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
        ]
    }
    env = env_of(container)
    assert env == {
        "A": "x",
        "B": "x-y",
        "POD": "web-1",
        "NS": "ns1",
        "NODE": "fovea-gpu-0",
        "IP": "127.0.0.1",
        "APP": "web",
        "TOKEN": "s3cret",
        "MODE": "fast",
    }


def test_env_from_with_prefix_then_env_overrides() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [{"name": "CFG_mode", "value": "slow"}],
    }
    assert env_of(container) == {"CFG_mode": "slow", "CFG_level": "3"}


def test_resource_field_refs() -> None:
    container = {
        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
        "env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
        ],
    }
    assert env_of(container) == {"CPU": "1", "MEM": "1024", "REQ": "1"}


@pytest.mark.parametrize(
    ("var", "message"),
    [
        ({"secretKeyRef": {"name": "missing", "key": "k"}}, 'secret "missing" not found'),
        (
            {"configMapKeyRef": {"name": "settings", "key": "nope"}},
            "couldn't find key nope in ConfigMap ns1/settings",
        ),
        ({"fieldRef": {"fieldPath": "spec.volumes"}}, "unsupported fieldRef"),
    ],
)
def test_missing_references_are_config_errors(var: dict[str, Any], message: str) -> None:
    with pytest.raises(ContainerConfigError, match=message):
        env_of({"env": [{"name": "X", "valueFrom": var}]})


def test_secret_data_is_decoded() -> None:
    encoded = {"a": base64.b64encode(b"hello").decode()}
    assert podspec.decode_secret(encoded) == {"a": "hello"}
    assert podspec.decode_secret(None) == {}


def test_command_line_resolves_venv_commands_and_expands(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    container = {"command": ["python", "-m", "http.server"], "args": ["$(PORT)"]}
    argv = podspec.command_line(container, {"PORT": "9999", "PATH": "/usr/bin"}, venv_bin)
    assert argv == [str(venv_bin / "python"), "-m", "http.server", "9999"]
    absolute = podspec.command_line({"command": ["/bin/sh", "-c", "true"]}, {}, venv_bin)
    assert absolute == ["/bin/sh", "-c", "true"]
    on_path = podspec.command_line({"command": ["sh"]}, {"PATH": "/bin:/usr/bin"}, tmp_path)
    assert Path(on_path[0]).name == "sh"


def test_command_line_needs_a_command() -> None:
    with pytest.raises(ContainerConfigError, match="no command"):
        podspec.command_line({"args": ["x"]}, {}, Path("/nonexistent"))
    with pytest.raises(ContainerConfigError, match="not found"):
        podspec.command_line({"command": ["no-such-program-xyz"]}, {"PATH": "/bin"}, Path("/x"))


def test_probe_parse_defaults_and_handlers() -> None:
    assert Probe.parse(None) is None
    http = Probe.parse({"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2})
    assert http == Probe(kind="http", port="http", path="/readyz", period_s=2.0)
    assert http.failure_threshold == 3 and http.timeout_s == 1.0
    tcp = Probe.parse({"tcpSocket": {"port": 80}, "initialDelaySeconds": 5})
    assert tcp is not None and (tcp.kind, tcp.initial_delay_s) == ("tcp", 5.0)
    exe = Probe.parse({"exec": {"command": ["true"]}})
    assert exe is not None and exe.command == ("true",)
    with pytest.raises(ContainerConfigError):
        Probe.parse({"periodSeconds": 1})


def test_probe_ports_resolve_as_a_kubelet_does() -> None:
    declared = {"ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]}
    by_name = Probe(kind="http", port="http")
    assert podspec.declared_port(declared) == 8080
    assert podspec.probe_port(by_name, declared, listen_port=8080) == 8080
    assert podspec.probe_port(Probe(kind="tcp", port=9090), declared, 8080) == 9090
    assert podspec.probe_port(Probe(kind="tcp", port="9090"), declared, 8080) == 9090
    # A name the container does not declare: the probe fails (None), as a kubelet's.
    assert podspec.probe_port(Probe(kind="http", port="metrics"), declared, 8080) is None
    # No declared port: the process listens on the port the agent gave it, probed there.
    assert podspec.declared_port({}) is None
    assert podspec.probe_port(by_name, {}, listen_port=41234) == 41234
    udp_only = {"ports": [{"containerPort": 53, "protocol": "UDP"}]}
    assert podspec.declared_port(udp_only) is None


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_restart_policy(policy: str, code: int, restart: bool) -> None:
    assert podspec.should_restart(policy, code) is restart


def test_backoff_doubles_to_a_cap() -> None:
    assert [podspec.backoff_s(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_grace_period_prefers_the_deletion_grace() -> None:
    assert podspec.grace_period_s({"metadata": {"deletionGracePeriodSeconds": 3}}) == 3
    assert podspec.grace_period_s({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 7}})
    assert podspec.grace_period_s({"metadata": {}, "spec": {}}) == 30
    assert podspec.exit_reason(0) == "Completed" and podspec.exit_reason(137) == "Error"
