"""Images for the container node: the pause image made here, and imports into containerd.

No registry is needed: the pause image is an OCI image archive written from
the static `pause` binary (localcluster/gobuild/cmd/pause), and every other
image comes from the local Docker engine (`docker save`) or an archive file,
imported with `ctr -n k8s.io images import`.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from fovea.localcluster.containernode_config import PAUSE_IMAGE

# The CRI plugin's namespace in containerd: the kubelet sees only images here.
CRI_NAMESPACE = "k8s.io"


class ImageImportFailed(RuntimeError):
    """`ctr images import` (or `docker save`) failed; the message has their words."""


def _tar_bytes(files: Sequence[tuple[str, bytes, int]]) -> bytes:
    """A tar of (name, content, mode) entries, owned by root, with fixed times."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _blob(data: bytes) -> tuple[str, bytes]:
    return f"sha256:{hashlib.sha256(data).hexdigest()}", data


def pause_image_archive(binary: bytes, name: str = PAUSE_IMAGE) -> bytes:
    """An OCI image archive (what `ctr images import` reads) of one static binary at /pause."""
    layer_digest, layer = _blob(_tar_bytes([("pause", binary, 0o755)]))
    config_digest, config = _blob(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            },
            sort_keys=True,
        ).encode()
    )
    manifest_digest, manifest = _blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": len(layer),
                    }
                ],
            },
            sort_keys=True,
        ).encode()
    )
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
            }
        ],
    }
    blobs = [(digest, data) for digest, data in ((layer_digest, layer), (config_digest, config))]
    blobs.append((manifest_digest, manifest))
    return _tar_bytes(
        [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644),
            ("index.json", json.dumps(index, sort_keys=True).encode(), 0o644),
            *((f"blobs/sha256/{d.split(':', 1)[1]}", data, 0o644) for d, data in blobs),
        ]
    )


def ctr_argv(socket: Path, *args: str) -> list[str]:
    """`ctr` against one containerd, in the CRI namespace."""
    return ["ctr", "--address", str(socket), "--namespace", CRI_NAMESPACE, *args]


def import_archive(socket: Path, archive: bytes | Path) -> None:
    """Import an image archive (bytes, or a file) into the node's containerd."""
    data = archive if isinstance(archive, bytes) else None
    argv = ctr_argv(socket, "images", "import", "-" if data is not None else str(archive))
    result = subprocess.run(argv, input=data, capture_output=True, check=False)
    if result.returncode != 0:
        raise ImageImportFailed(f"{' '.join(argv)}: {result.stderr.decode(errors='replace')}")


def import_from_docker(socket: Path, image: str, docker: str = "docker") -> None:
    """Copy `image` from the local Docker engine into the node's containerd (a pipe, no file)."""
    save = subprocess.Popen([docker, "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    argv = ctr_argv(socket, "images", "import", "-")
    result = subprocess.run(argv, stdin=save.stdout, capture_output=True, check=False)
    assert save.stdout is not None and save.stderr is not None
    save.stdout.close()
    save_error = save.stderr.read().decode(errors="replace")
    if save.wait() != 0:
        raise ImageImportFailed(f"{docker} save {image}: {save_error}")
    if result.returncode != 0:
        raise ImageImportFailed(f"{' '.join(argv)}: {result.stderr.decode(errors='replace')}")


def images(socket: Path) -> list[str]:
    """The names of the images the node's containerd holds (for the kubelet)."""
    result = subprocess.run(
        ctr_argv(socket, "images", "ls", "--quiet"), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ImageImportFailed(f"ctr images ls: {result.stderr}")
    return [line for line in result.stdout.splitlines() if line and not line.startswith("sha256:")]
