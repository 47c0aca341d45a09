"""Run one probe against a pod process at its own address.

Each pod has an address of its own (`podnet`); HTTP, TCP and gRPC probes
connect there, on the port `podspec.probe_port` resolves (a named port
through the container's ports). An exec probe of a container with
volumes runs in that container's mount namespace (`nsenter`), so it sees what
the container sees.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
from collections.abc import Mapping
from pathlib import Path

from fovea.localcluster.podspec import Probe


def run_probe(
    probe: Probe,
    host: str,
    port: int | None,
    env: Mapping[str, str],
    cwd: Path,
    inside: int | None = None,
) -> bool:
    """True when the probe succeeds (HTTP 200-399, TCP connect, exec exit 0).

    `host`: the pod's address; `port`: the probe's resolved port (None: it
    names a port the container does not declare, which fails as a kubelet's
    does). `inside`: the pid of a container process with a mount namespace of
    its own (volumes), for exec probes to run in.
    """
    if probe.kind == "exec":
        return _exec(probe, env, cwd, inside)
    if port is None:
        return False
    if probe.kind == "http":
        return _http(probe, host, port)
    # tcp, and grpc: gRPC health checking is approximated by the port accepting connections.
    return _tcp(host, port, probe.timeout_s)


def in_namespace_of(pid: int, command: list[str]) -> list[str]:
    """`command` run in the mount namespace, root and working directory of process `pid`."""
    enter = ["nsenter", f"--target={pid}", "--mount", "--root", "--wd"]
    if os.geteuid() != 0:  # mountns.py made a user namespace too
        enter += ["--user", "--preserve-credentials"]
    return [*enter, "--", *command]


def _http(probe: Probe, host: str, port: int) -> bool:
    connection: http.client.HTTPConnection
    if probe.scheme == "HTTPS":
        # Kubelets do not verify probe certificates either.
        context = ssl._create_unverified_context()
        connection = http.client.HTTPSConnection(
            host, port, timeout=probe.timeout_s, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=probe.timeout_s)
    try:
        headers = {"User-Agent": "kube-probe/fovea-node-agent", **dict(probe.headers)}
        connection.request("GET", probe.path, headers=headers)
        return 200 <= connection.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _tcp(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _exec(probe: Probe, env: Mapping[str, str], cwd: Path, inside: int | None) -> bool:
    if not probe.command:
        return False
    command = list(probe.command)
    try:
        result = subprocess.run(
            command if inside is None else in_namespace_of(inside, command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=probe.timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
