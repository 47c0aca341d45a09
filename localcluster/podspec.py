"""What a kubelet derives from a pod spec, as pure functions of plain dicts.

The container's environment (values, field and resource references, secrets
and config maps), `$(VAR)` expansion, the command to run, probes and the
restart policy. The node agent (`fovea.localcluster.agent`) does the I/O.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fovea.domain.backoff import exponential

# (kind "secret" | "configmap", namespace, name) -> its data (decoded), or None if absent.
Lookup = Callable[[str, str, str], Mapping[str, str] | None]

# Commands resolved from the virtual environment's bin directory first.
VENV_COMMANDS = ("fovea-models", "python", "python3")

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 30.0
# A container that ran at least this long restarts without backoff.
BACKOFF_RESET_AFTER_S = 60.0


class ContainerConfigError(ValueError):
    """The container cannot be started as specified (kubelet: CreateContainerConfigError)."""

    reason = "CreateContainerConfigError"  # the container's waiting reason


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` escapes, unknown references stay as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end == -1:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _field_ref(pod: Mapping[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
        "status.podIPs": pod_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str(meta.get(match[1], {}).get(match[2], ""))
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_BYTES = {
    "": 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_MEM = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|)$")


def _resource_ref(
    container: Mapping[str, Any], ref: Mapping[str, Any], cpu: int, memory: int
) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    resources = container.get("resources", {}) or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(name)
    divisor = str(ref.get("divisor", "1") or "1")
    if name == "cpu":
        amount = _parse_cpu(str(value)) if value is not None else float(cpu)
        return str(max(1, int(-(-amount // _parse_cpu(divisor)))))
    if name in ("memory", "ephemeral-storage"):
        amount_b = _parse_bytes(str(value)) if value is not None else memory
        return str(max(1, -(-amount_b // _parse_bytes(divisor))))
    if value is None:
        raise ContainerConfigError(f"resourceFieldRef {resource!r} is not set on the container")
    return str(value)


def _parse_cpu(text: str) -> float:
    match = _CPU.match(text)
    if not match:
        raise ContainerConfigError(f"invalid CPU quantity {text!r}")
    return float(match[1]) / (1000 if match[2] else 1)


def _parse_bytes(text: str) -> int:
    match = _MEM.match(text)
    if not match:
        raise ContainerConfigError(f"invalid memory quantity {text!r}")
    return int(float(match[1]) * _BYTES[match[2]])


_KIND = {"secret": "Secret", "configmap": "ConfigMap"}


def _key_ref(lookup: Lookup, kind: str, namespace: str, ref: Mapping[str, Any]) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    data = lookup(kind, namespace, name)
    if data is None or key not in data:
        if optional:
            return None
        # The kubelet's words, so callers read the same message on any cluster.
        if data is None:
            raise ContainerConfigError(f'{kind} "{name}" not found')
        raise ContainerConfigError(f"couldn't find key {key} in {_KIND[kind]} {namespace}/{name}")
    return data[key]


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    lookup: Lookup,
    *,
    pod_ip: str,
    cpu: int,
    memory: int,
    preset: Mapping[str, str] | None = None,
    host_ip: str | None = None,
) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom, then env in order).

    `preset` variables (the agent's own, like PORT) come first, so `$(PORT)`
    in a value expands; the container may redefine them. `host_ip` (for
    `status.hostIP`) defaults to `pod_ip`.
    """
    namespace = pod.get("metadata", {}).get("namespace", "default")
    env: dict[str, str] = dict(preset or {})
    for source in container.get("envFrom", []) or []:
        prefix = source.get("prefix", "") or ""
        for kind, field in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(field)
            if not ref:
                continue
            data = lookup(kind, namespace, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{kind} "{ref.get("name")}" not found')
            env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env", []) or []:
        name = var["name"]
        if "valueFrom" not in var or var["valueFrom"] is None:
            # Values may refer to variables defined before them.
            env[name] = expand(str(var.get("value", "") or ""), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if source.get("fieldRef"):
            path = source["fieldRef"]["fieldPath"]
            value = _field_ref(pod, path, pod_ip, pod_ip if host_ip is None else host_ip)
        elif source.get("resourceFieldRef"):
            value = _resource_ref(container, source["resourceFieldRef"], cpu, memory)
        elif source.get("secretKeyRef"):
            value = _key_ref(lookup, "secret", namespace, source["secretKeyRef"])
        elif source.get("configMapKeyRef"):
            value = _key_ref(lookup, "configmap", namespace, source["configMapKeyRef"])
        else:
            raise ContainerConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def decode_secret(data: Mapping[str, str] | None) -> dict[str, str]:
    """A Secret's `data` (base64) as text."""
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (data or {}).items()}


def command_line(container: Mapping[str, Any], env: Mapping[str, str], bin_dir: Path) -> list[str]:
    """command + args with `$(VAR)` expanded; venv commands resolved from `bin_dir`.

    There is no image here to take an entrypoint from, so a command is required.
    """
    command = [expand(str(part), env) for part in container.get("command") or []]
    args = [expand(str(part), env) for part in container.get("args") or []]
    if not command:
        raise ContainerConfigError(
            "the container has no command: the local node agent runs commands, not image "
            "entrypoints"
        )
    program = command[0]
    if "/" not in program:
        local = bin_dir / program
        if program in VENV_COMMANDS and os.access(local, os.X_OK):
            program = str(local)
        else:
            found = shutil.which(program, path=os.pathsep.join([str(bin_dir), env.get("PATH", "")]))
            if found is None:
                raise ContainerConfigError(f"executable {program!r} not found in the venv or PATH")
            program = found
    return [program, *command[1:], *args]


@dataclass(frozen=True)
class Probe:
    """One probe of a container, with the kubelet's defaults."""

    kind: str  # "http", "tcp", "exec" or "grpc"
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    port: int | str | None = None  # httpGet/tcpSocket/grpc: a number or a container port's name
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None) -> Probe | None:
        """A Probe from a pod spec's probe object, or None when there is none."""
        if not spec:
            return None
        base = cls(
            kind="",
            initial_delay_s=float(spec.get("initialDelaySeconds") or 0),
            period_s=float(spec.get("periodSeconds") or 10),
            timeout_s=float(spec.get("timeoutSeconds") or 1),
            success_threshold=int(spec.get("successThreshold") or 1),
            failure_threshold=int(spec.get("failureThreshold") or 3),
        )
        if spec.get("httpGet"):
            http = spec["httpGet"]
            return replace(
                base,
                kind="http",
                port=http.get("port"),
                path=http.get("path") or "/",
                scheme=(http.get("scheme") or "HTTP").upper(),
                headers=tuple((h["name"], h["value"]) for h in http.get("httpHeaders") or []),
            )
        if spec.get("tcpSocket"):
            return replace(base, kind="tcp", port=spec["tcpSocket"].get("port"))
        if spec.get("exec"):
            return replace(base, kind="exec", command=tuple(spec["exec"].get("command") or ()))
        if spec.get("grpc"):
            return replace(base, kind="grpc", port=spec["grpc"].get("port"))
        raise ContainerConfigError(f"unsupported probe handler in {sorted(spec)}")


def declared_port(container: Mapping[str, Any]) -> int | None:
    """The container's first declared TCP `containerPort`, or None when it declares none."""
    for port in container.get("ports") or []:
        if (port.get("protocol") or "TCP") == "TCP" and port.get("containerPort"):
            return int(port["containerPort"])
    return None


def probe_port(probe: Probe, container: Mapping[str, Any], listen_port: int) -> int | None:
    """The port a probe connects to; None when it names a port the container lacks.

    A container that declares ports is probed as a kubelet does: a number as
    is, a name resolved through its `ports`. One that declares none listens on
    the port the agent gave it (`listen_port`), where every probe goes.
    """
    ports = container.get("ports") or []
    if not ports:
        return listen_port
    if isinstance(probe.port, int):
        return probe.port
    if isinstance(probe.port, str) and probe.port.isdigit():
        return int(probe.port)
    for port in ports:
        if probe.port is not None and port.get("name") == probe.port:
            return int(port["containerPort"])
    return None


def should_restart(policy: str, exit_code: int) -> bool:
    """restartPolicy: Always restarts every exit, OnFailure only non-zero ones, Never none."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


def backoff_s(streak: int) -> float:
    """Delay before a restart after `streak` quick crashes in a row: 1 s doubling to 30 s.

    The runner resets the streak when a process ran BACKOFF_RESET_AFTER_S or longer.
    """
    return exponential(streak, BACKOFF_BASE_S, BACKOFF_MAX_S)


def exit_reason(code: int) -> str:
    """The container state reason the kubelet reports for an exit code."""
    return "Completed" if code == 0 else "Error"


def grace_period_s(pod: Mapping[str, Any]) -> float:
    """How long a deleted pod's process gets between SIGTERM and SIGKILL."""
    meta_grace = pod.get("metadata", {}).get("deletionGracePeriodSeconds")
    if meta_grace is not None:
        return float(meta_grace)
    spec_grace = pod.get("spec", {}).get("terminationGracePeriodSeconds")
    return float(spec_grace) if spec_grace is not None else 30.0
