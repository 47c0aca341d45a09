"""The container node's configuration files, as pure functions of its layout.

The container node (localcluster/containernode.py) is a real kubelet with
Debian's containerd and runc beside the node agent's process nodes. These
functions render what they read: containerd's config (CRI plugin, CNI paths,
the pause image made here), the CNI network (Debian's `bridge` and
`host-local` plugins) and the KubeletConfiguration.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fovea.domain import constants as c

NODE_NAME = "container-node"
# The node pulls nothing (no registry is reachable): it runs only the images
# imported into its containerd. Pods meant for it tolerate this taint and select
# this label; the operator pins a model pod there only when the node lists the
# pod's images (fovea.domain.nodes); nothing else lands there.
TAINT_KEY = c.TAINT_PRELOADED_IMAGES
NODE_KIND_LABEL = "fovea.dev/node-kind"
NODE_KIND = "container"
PAUSE_IMAGE = "fovea.local/pause:3.10"
BRIDGE = "fovea0"
POD_SUBNET = "10.88.0.0/24"
# The `kubernetes` Service's ClusterIP (SERVICE_CIDR's first address), which
# pods reach through a DNAT to the API server on loopback.
SERVICE_IP = "10.0.0.1"
SERVICE_PORT = 443


@dataclass(frozen=True)
class Layout:
    """Where one container node keeps its files (under the cluster's state directory)."""

    root: Path
    # Unix socket paths are limited to 108 bytes: the socket lives in a short directory.
    run: Path

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd-state"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet" / "config.yaml"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet" / "root"


def gateway(subnet: str = POD_SUBNET) -> str:
    """The bridge's address: the subnet's first host, also the node's InternalIP."""
    return str(next(ipaddress.ip_network(subnet).hosts()))


def containerd_config(layout: Layout, cni_bin_dir: Path, snapshotter: str) -> str:
    """containerd 1.6+ config (version 2) for a CRI endpoint of its own."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f"root = {json.dumps(str(layout.containerd_root))}",
            f"state = {json.dumps(str(layout.containerd_state))}",
            "[grpc]",
            f"  address = {json.dumps(str(layout.containerd_socket))}",
            f"[{cri}]",
            f"  sandbox_image = {json.dumps(PAUSE_IMAGE)}",
            # Lowering an OOM score needs CAP_SYS_RESOURCE, which a sandbox may
            # lack: keep scores at or above containerd's own.
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            f"[{cri}.containerd]",
            f"  snapshotter = {json.dumps(snapshotter)}",
            '  default_runtime_name = "runc"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            "  SystemdCgroup = false",
            f"[{cri}.cni]",
            f"  bin_dir = {json.dumps(str(cni_bin_dir))}",
            f"  conf_dir = {json.dumps(str(layout.cni_conf_dir))}",
            "",
        ]
    )


def cni_config(layout: Layout, subnet: str = POD_SUBNET) -> dict[str, Any]:
    """One bridge network; pods reach the host (and the API server) through its gateway."""
    return {
        "cniVersion": "1.0.0",
        "name": "fovea",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet, "gateway": gateway(subnet)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_ipam_dir),
                },
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(
    layout: Layout,
    *,
    address: str,
    port: int,
    healthz_port: int,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    cgroup_root: str,
) -> dict[str, Any]:
    """A KubeletConfiguration for cgroup v1 or v2 with the cgroupfs driver.

    `failCgroupV1: false` keeps 1.35+ kubelets running on cgroup v1 hosts. The
    API server's client certificate (cluster CA) is the only one accepted.
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert_file),
        "tlsPrivateKeyFile": str(key_file),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,
        "serializeImagePulls": False,
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        # A developer's disk is often fuller than a server's: evict only when nearly full.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
        },
        # Images are imported, never pulled: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
    }
