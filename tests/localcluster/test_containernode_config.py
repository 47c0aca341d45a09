"""The container node's config files and pause image, as pure functions (no daemon runs)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

from fovea.localcluster.containernode_config import (
    BRIDGE,
    PAUSE_IMAGE,
    TAINT_KEY,
    Layout,
    cni_config,
    containerd_config,
    gateway,
    kubelet_config,
)
from fovea.localcluster.containernode_images import pause_image_archive

LAYOUT = Layout(root=Path("/state/container-node"), run=Path("/run/fovea-models/cn-1"))


def test_the_gateway_is_the_subnets_first_host() -> None:
    assert gateway("10.88.0.0/24") == "10.88.0.1"
    assert gateway("192.168.7.0/28") == "192.168.7.1"


def test_containerd_has_its_own_socket_state_and_the_pause_image_made_here() -> None:
    config = tomllib.loads(containerd_config(LAYOUT, Path("/usr/lib/cni"), "native"))
    assert config["version"] == 2
    assert config["grpc"]["address"] == "/run/fovea-models/cn-1/containerd.sock"
    assert config["root"].startswith("/state/container-node/")
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == PAUSE_IMAGE
    assert cri["restrict_oom_score_adj"] is True
    assert cri["containerd"]["snapshotter"] == "native"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"] == {
        "bin_dir": "/usr/lib/cni",
        "conf_dir": "/state/container-node/cni/net.d",
    }


def test_the_cni_network_is_one_bridge_whose_gateway_is_the_node() -> None:
    config = cni_config(LAYOUT, "10.88.0.0/24")
    bridge = config["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == BRIDGE and bridge["isGateway"]
    (subnet,) = bridge["ipam"]["ranges"][0]
    assert subnet == {"subnet": "10.88.0.0/24", "gateway": "10.88.0.1"}
    assert bridge["ipam"]["dataDir"] == "/state/container-node/cni/ipam"
    assert [p["type"] for p in config["plugins"]] == ["bridge", "loopback"]


def test_the_kubelet_runs_on_cgroup_v1_with_cgroupfs_and_registers_tainted() -> None:
    config = kubelet_config(
        LAYOUT,
        address="10.88.0.1",
        port=10250,
        healthz_port=10248,
        ca_file=Path("/pki/ca.crt"),
        cert_file=Path("/pki/k.crt"),
        key_file=Path("/pki/k.key"),
        cgroup_root="/",
    )
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["containerRuntimeEndpoint"] == "unix:///run/fovea-models/cn-1/containerd.sock"
    assert config["registerWithTaints"] == [
        {"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}
    ]
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authentication"]["x509"] == {"clientCAFile": "/pki/ca.crt"}
    assert config["readOnlyPort"] == 0
    assert config["imageGCHighThresholdPercent"] == 100  # imported images are never pulled again


def test_the_pause_image_is_an_oci_archive_of_the_binary() -> None:
    binary = b"\x7fELF pretend"
    with tarfile.open(fileobj=io.BytesIO(pause_image_archive(binary)), mode="r") as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]

    def blob(digest: str) -> bytes:
        data = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
        assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
        return data

    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == PAUSE_IMAGE
    manifest = json.loads(blob(entry["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["config"]["User"] == "65535:65535"  # not root
    (layer_ref,) = manifest["layers"]
    assert config["rootfs"]["diff_ids"] == [layer_ref["digest"]]  # uncompressed
    with tarfile.open(fileobj=io.BytesIO(blob(layer_ref["digest"])), mode="r") as layer:
        (member,) = layer.getmembers()
        assert member.name == "pause" and member.mode == 0o755
        assert layer.extractfile(member).read() == binary  # type: ignore[union-attr]
