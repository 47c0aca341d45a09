"""`ContainerNode`: a real kubelet with containerd beside the node agent's process nodes.

    with LocalCluster(state_dir) as cluster, ContainerNode(cluster.state, cluster.server) as node:
        node.import_from_docker("ghcr.io/fovea-models/control-plane:0.1.0")
        # pods that tolerate the taint `fovea.dev/preloaded-images` and select the label
        # `fovea.dev/node-kind=container` run there as containers; so do the operator's
        # model pods when the node holds their image

`start()` builds the kubelet and the pause binary from the Go module proxy
(once per machine, localcluster/gobuild/build.sh), writes containerd's, the
CNI network's and the kubelet's configs (localcluster/containernode_config.py),
creates the pod bridge and the DNAT that takes pods to the API server on
loopback through the `kubernetes` Service address, starts Debian's containerd
(overlayfs snapshotter, native where overlayfs cannot mount), imports the
pause image made here, starts the kubelet and returns once the node is Ready.
`stop()` kills the pods' containers, stops both daemons, unmounts what they
mounted, removes the DNAT and the node object. One container node per machine
at a time (the bridge, its subnet and the `kubepods` cgroups are the
machine's): a second one waits for the first to stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psutil

from fovea.domain.image_refs import normalize_image
from fovea.domain.nodes import node_images
from fovea.localcluster import containernode_images as images
from fovea.localcluster.binaries import GOBUILD
from fovea.localcluster.containernode_config import (
    BRIDGE,
    NODE_NAME,
    POD_SUBNET,
    SERVICE_IP,
    SERVICE_PORT,
    Layout,
    cni_config,
    containerd_config,
    gateway,
    kubelet_config,
)
from fovea.localcluster.pki import Pki, ensure_serving_cert
from fovea.localcluster.rest import ApiError, Rest
from fovea.localcluster.settings import child_environment
from fovea.localcluster.spawn import Spawner, tail, terminate
from fovea.localcluster.state import StateDir

TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip", "mount")
CNI_BIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
CNI_PLUGINS = ("bridge", "host-local", "loopback")
MACHINE_DIR = Path("/run/fovea-models")
DEFAULT_START_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
INSTALL_HINT = "apt-get install containerd runc containernetworking-plugins iptables"


class ContainerNodeUnavailable(RuntimeError):
    """The container node cannot run here; the message says what is missing or what failed."""


def _stderr(message: str) -> None:
    print(f"fovea-models container node: {message}", file=sys.stderr, flush=True)


def missing_tools() -> list[str]:
    """What this machine lacks for a container node (commands, CNI plugins), by name."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if cni_bin_dir() is None:
        missing.append(f"CNI plugins {', '.join(CNI_PLUGINS)} (containernetworking-plugins)")
    return missing


def cni_bin_dir() -> Path | None:
    """The first directory that holds the CNI plugins this node uses."""
    for directory in CNI_BIN_DIRS:
        if all((directory / plugin).exists() for plugin in CNI_PLUGINS):
            return directory
    return None


def build_binaries() -> Path:
    """The directory with the kubelet and the pause binary (built once per machine)."""
    directory = Path()
    for target in ("kubelet", "pause"):
        result = subprocess.run(
            ["bash", str(GOBUILD / "build.sh"), target], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ContainerNodeUnavailable(f"building {target} failed: {result.stderr.strip()}")
        directory = Path(result.stdout.strip().splitlines()[-1])
    return directory


def overlayfs_works(scratch: Path) -> bool:
    """Whether an overlay filesystem mounts in `scratch` (some sandboxes refuse it)."""
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        lower, upper, work, merged = (Path(tmp) / n for n in ("lower", "upper", "work", "merged"))
        for d in (lower, upper, work, merged):
            d.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
            capture_output=True,
            check=False,
        )
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", str(merged)], check=False)
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _must(argv: list[str]) -> None:
    result = _run(argv)
    if result.returncode != 0:
        raise ContainerNodeUnavailable(f"{' '.join(argv)}: {result.stderr.strip()}")


class ContainerNode:
    """One kubelet + containerd node of a running local cluster, owned by this process."""

    def __init__(
        self,
        state: StateDir,
        server: str,
        *,
        log: Callable[[str], None] = _stderr,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        self.state = state
        self.server = server
        self.name = NODE_NAME
        self._log = log
        self.start_timeout_s = start_timeout_s
        key = hashlib.sha256(str(state.root.resolve()).encode()).hexdigest()[:12]
        self.layout = Layout(root=state.root / "container-node", run=MACHINE_DIR / f"cn-{key}")
        self.snapshotter = ""
        self._spawner: Spawner | None = None
        self._containerd: subprocess.Popen[bytes] | None = None
        self._kubelet: subprocess.Popen[bytes] | None = None
        self._rest: Rest | None = None
        self._lock: IO[str] | None = None
        self._dnat: list[str] = []

    @property
    def socket(self) -> Path:
        """containerd's CRI socket."""
        return self.layout.containerd_socket

    @property
    def kubelet_log(self) -> Path:
        return self.state.logs / "kubelet.log"

    @property
    def containerd_log(self) -> Path:
        return self.state.logs / "containerd.log"

    # --- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start containerd and the kubelet; return once the node is Ready, else stop and raise."""
        missing = missing_tools()
        if missing:
            raise ContainerNodeUnavailable(
                f"missing here: {', '.join(missing)} (install: {INSTALL_HINT})"
            )
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        began = time.monotonic()
        deadline = began + self.start_timeout_s
        self._lock = self._machine_lock(deadline)
        bin_dir = build_binaries()
        self._write_configs()
        self._network()
        self.snapshotter = "overlayfs" if overlayfs_works(self.layout.containerd_root) else "native"
        self._start_containerd(deadline)
        images.import_archive(
            self.socket, images.pause_image_archive((bin_dir / "pause").read_bytes())
        )
        self._rest = Rest(self.state.kubeconfigs / "node-agent.kubeconfig")
        self._start_kubelet(bin_dir, deadline)
        self._wait_ready(deadline)
        self._log(
            f"{self.name} Ready in {time.monotonic() - began:.1f}s "
            f"(containerd {self.snapshotter} snapshotter, pods on {POD_SUBNET})"
        )

    def _machine_lock(self, deadline: float) -> IO[str]:
        MACHINE_DIR.mkdir(parents=True, exist_ok=True)
        handle = (MACHINE_DIR / "container-node.lock").open("w")
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise ContainerNodeUnavailable(
                        "another container node runs on this machine (one at a time)"
                    ) from None
                time.sleep(0.5)

    def _write_configs(self) -> None:
        layout = self.layout
        for directory in (
            layout.cni_conf_dir,
            layout.cni_ipam_dir,
            layout.kubelet_root,
            layout.run,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.parent.mkdir(parents=True, exist_ok=True)
        (layout.cni_conf_dir / "10-fovea.conflist").write_text(json.dumps(cni_config(layout)))

    def _network(self) -> None:
        """The pod bridge (its gateway is the node's address) and the DNAT to the API server."""
        gw = gateway()
        if _run(["ip", "link", "show", BRIDGE]).returncode != 0:
            _must(["ip", "link", "add", BRIDGE, "type", "bridge"])
        prefix = POD_SUBNET.split("/")[1]
        if f"inet {gw}/" not in _run(["ip", "-4", "addr", "show", BRIDGE]).stdout:
            _must(["ip", "addr", "add", f"{gw}/{prefix}", "dev", BRIDGE])
        _must(["ip", "link", "set", BRIDGE, "up"])
        # Pods reach the API server (on loopback) at the `kubernetes` Service's address,
        # as kube-proxy would take them there: a DNAT to 127.0.0.1, which the kernel
        # routes only with route_localnet on the bridge.
        Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").write_text("1")
        port = self.server.rsplit(":", 1)[1]
        self._dnat = [
            "PREROUTING", "-i", BRIDGE, "-d", f"{SERVICE_IP}/32", "-p", "tcp",
            "--dport", str(SERVICE_PORT), "-j", "DNAT", "--to-destination", f"127.0.0.1:{port}",
        ]  # fmt: skip
        # A node that died without stop() left its rule, to a port that may be gone.
        for rule in _run(["iptables", "-t", "nat", "-S", "PREROUTING"]).stdout.splitlines():
            words = rule.split()
            if words[:1] == ["-A"] and f"{SERVICE_IP}/32" in words and BRIDGE in words:
                _run(["iptables", "-t", "nat", "-D", *words[1:]])
        _must(["iptables", "-t", "nat", "-A", *self._dnat])

    def _start_containerd(self, deadline: float) -> None:
        cni_dir = cni_bin_dir()
        assert cni_dir is not None
        self.layout.containerd_config.write_text(
            containerd_config(self.layout, cni_dir, self.snapshotter)
        )
        self._spawner = Spawner()
        self._containerd = self._spawner.spawn(
            ["containerd", "--config", str(self.layout.containerd_config)],
            env=_env(),
            log=self.containerd_log,
            cwd=self.layout.root,
        )
        while _run(images.ctr_argv(self.socket, "version")).returncode != 0:
            self._check_alive(self._containerd, "containerd", self.containerd_log)
            if time.monotonic() > deadline:
                raise ContainerNodeUnavailable(
                    f"containerd did not answer on {self.socket}:\n{tail(self.containerd_log)}"
                )
            time.sleep(0.2)

    def _start_kubelet(self, bin_dir: Path, deadline: float) -> None:
        assert self._spawner is not None
        pki = Pki(self.state.pki)
        gw = gateway()
        cert, key = ensure_serving_cert(pki, "kubelet-container-node", (gw,))
        config = kubelet_config(
            self.layout,
            address=gw,
            port=_free_port(),
            healthz_port=_free_port(),
            ca_file=pki.ca_cert,
            cert_file=cert,
            key_file=key,
            cgroup_root="/",
        )
        self.layout.kubelet_config.parent.mkdir(parents=True, exist_ok=True)
        self.layout.kubelet_config.write_text(json.dumps(config, indent=1))
        self._kubelet = self._spawner.spawn(
            [
                str(bin_dir / "kubelet"),
                f"--config={self.layout.kubelet_config}",
                f"--kubeconfig={self.state.kubeconfigs / 'node-agent.kubeconfig'}",
                f"--root-dir={self.layout.kubelet_root}",
                f"--hostname-override={self.name}",
                f"--node-ip={gw}",
                "--node-labels=fovea.dev/node-kind=container",
                "--v=1",
            ],
            env=_env(),
            log=self.kubelet_log,
            cwd=self.layout.root,
        )

    def _wait_ready(self, deadline: float) -> None:
        def ready(node: dict[str, Any]) -> bool:
            conditions = node.get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait_for_node(ready, deadline, f"{self.name} was not Ready in time")

    def _wait_for_node(
        self, done: Callable[[dict[str, Any]], bool], deadline: float, failure: str
    ) -> None:
        """Poll the Node object until `done` says so (while the kubelet lives), or fail."""
        assert self._rest is not None and self._kubelet is not None
        while True:
            self._check_alive(self._kubelet, "kubelet", self.kubelet_log)
            with contextlib.suppress(ApiError):
                if done(self._rest.get(f"/api/v1/nodes/{self.name}")):
                    return
            if time.monotonic() > deadline:
                raise ContainerNodeUnavailable(f"{failure}:\n{tail(self.kubelet_log)}")
            time.sleep(0.2)

    @staticmethod
    def _check_alive(process: subprocess.Popen[bytes], name: str, log: Path) -> None:
        code = process.poll()
        if code is not None:
            raise ContainerNodeUnavailable(f"{name} exited with code {code}:\n{tail(log)}")

    # --- images ---------------------------------------------------------------------------

    def import_from_docker(
        self, image: str, docker: str = "docker", timeout_s: float = 120
    ) -> None:
        """Make `image` (from the local Docker engine) runnable here without a pull.

        Returns once the kubelet lists it in the Node's `status.images`, which is
        what the operator's planner reads (its image cache refreshes every 30 s).
        """
        images.import_from_docker(self.socket, image, docker)
        wanted = normalize_image(image)
        self._wait_for_node(
            lambda node: wanted in node_images(node),
            time.monotonic() + timeout_s,
            f"the kubelet did not list {image} in {self.name}'s status.images in time",
        )

    def images(self) -> list[str]:
        return images.images(self.socket)

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill every container, stop both daemons, undo the mounts and the DNAT; idempotent."""
        if self._kubelet is not None:
            terminate(self._kubelet, STOP_GRACE_S)
            self._kubelet = None
        if self._containerd is not None:
            self._remove_containers()
            terminate(self._containerd, STOP_GRACE_S)
            self._containerd = None
        self._kill_shims()
        self._unmount()
        shutil.rmtree(self.layout.run, ignore_errors=True)
        if self._dnat:
            _run(["iptables", "-t", "nat", "-D", *self._dnat])
            self._dnat = []
        if self._rest is not None:
            with contextlib.suppress(ApiError):
                self._rest.request("DELETE", f"/api/v1/nodes/{self.name}")
            self._rest.close()
            self._rest = None
        if self._spawner is not None:
            self._spawner.close()
            self._spawner = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _remove_containers(self) -> None:
        tasks = _run(images.ctr_argv(self.socket, "tasks", "ls", "--quiet")).stdout.split()
        for task in tasks:
            _run(images.ctr_argv(self.socket, "tasks", "kill", "--all", "--signal", "KILL", task))
        for task in tasks:
            _run(images.ctr_argv(self.socket, "tasks", "delete", "--force", task))
        for container in _run(
            images.ctr_argv(self.socket, "containers", "ls", "--quiet")
        ).stdout.split():
            _run(images.ctr_argv(self.socket, "containers", "delete", container))

    def _kill_shims(self) -> None:
        """Shims of this node's containerd that outlived it (they name its socket)."""
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info.get("cmdline") or []
            if cmdline and "containerd-shim" in cmdline[0] and str(self.socket) in cmdline:
                with contextlib.suppress(psutil.Error):
                    process.kill()

    def _unmount(self) -> None:
        roots = (str(self.layout.root), str(self.layout.run))
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(roots)
        ]
        for mountpoint in sorted(mounts, key=len, reverse=True):
            _run(["umount", "--lazy", mountpoint])

    def __enter__(self) -> ContainerNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _env() -> dict[str, str]:
    drop = {"KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}
    return child_environment(drop.__contains__)
