"""A pod's volumes on a local node: where each lives on this machine, and how it is mounted.

Pure parts (paths and mount plans, from plain dicts) and a thin I/O part
(`resolve_volumes`: directories made, PVCs and PVs read from the API). The
mounts themselves happen in the container's own mount namespace
(`mountns.py`, which `wrap` puts in front of the command line).

Where each kind of volume lives (`<state>` is the cluster's state directory):

- `hostPath` → `<state>/nodes/<node>/hostpath/<path>`: each simulated node has
  its own host filesystem (so a node cache on one node is not seen on another);
- `emptyDir` → `<state>/pods/<uid>/volumes/empty-dir/<name>` (removed with the pod);
- `persistentVolumeClaim` → the directory of its bound PersistentVolume: a
  `hostPath` or `local` PV under `<state>` (the local-path provisioner's,
  `<state>/volumes/<namespace>-<claim>-<uid>`) is used as is, shared by all
  nodes; any other path is a path on the pod's node, mapped as `hostPath` is.

Other volume kinds (the service-account token's `projected` volume,
`configMap`, `secret`, `downwardAPI`, ...) are not mounted; the agent gives
the pod its credentials through `$KUBECONFIG` instead.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fovea.localcluster.podspec import ContainerConfigError
from fovea.localcluster.rest import ApiError, Rest

MOUNTNS_SCRIPT = Path(__file__).with_name("mountns.py")
# What every pod process needs besides its own directory: the virtual environment
# and the package's source (an editable install), even under a volume's mountPath.
RUNTIME_DIRS = (Path(sys.prefix), Path(__file__).resolve().parents[1])
# hostPath types that make what is missing; "" (unset) behaves like a container
# runtime: a missing path becomes a directory.
CREATES_DIRECTORY = ("", "DirectoryOrCreate")
MUST_EXIST = {
    "Directory": stat.S_ISDIR,
    "File": stat.S_ISREG,
    "Socket": stat.S_ISSOCK,
    "CharDevice": stat.S_ISCHR,
    "BlockDevice": stat.S_ISBLK,
}


class VolumeNotReady(ContainerConfigError):
    """A volume cannot be set up yet (kubelet: the container waits in ContainerCreating)."""

    reason = "ContainerCreating"


@dataclass(frozen=True)
class HostVolume:
    """Where one pod volume lives on this machine."""

    path: Path
    read_only: bool = False


@dataclass(frozen=True)
class Mount:
    """One bind mount of a container: `source` on this machine at `target` in the container."""

    source: str
    target: str
    read_only: bool

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "readOnly": self.read_only}


def _relative(path: str) -> PurePosixPath:
    """An absolute volume path as a relative one, refusing `..`."""
    pure = PurePosixPath("/", path)
    if ".." in pure.parts:
        raise ContainerConfigError(f"path {path!r} must not contain '..'")
    return pure.relative_to("/")


def hostpath_dir(state_root: Path, node: str, path: str) -> Path:
    """Where `hostPath: {path}` of a pod on `node` lives."""
    return state_root / "nodes" / node / "hostpath" / _relative(path)


def emptydir_dir(state_root: Path, uid: str, name: str) -> Path:
    return state_root / "pods" / uid / "volumes" / "empty-dir" / name


def provisioned_dir(state_root: Path, namespace: str, claim: str, uid: str) -> Path:
    """The directory the local-path provisioner makes for a claim."""
    return state_root / "volumes" / f"{namespace}-{claim}-{uid}"


def pv_dir(state_root: Path, node: str, pv: Mapping[str, Any]) -> Path:
    """The directory of a `hostPath` or `local` PersistentVolume as the pod on `node` sees it."""
    spec = pv.get("spec") or {}
    source = spec.get("hostPath") or spec.get("local")
    if not source or not source.get("path"):
        name = (pv.get("metadata") or {}).get("name")
        raise VolumeNotReady(f"persistentvolume {name!r} is neither hostPath nor local")
    path = Path(source["path"])
    if path.is_relative_to(state_root):
        return path
    return hostpath_dir(state_root, node, str(path))


def container_mounts(
    container: Mapping[str, Any], volumes: Mapping[str, HostVolume]
) -> list[Mount]:
    """The container's `volumeMounts` of volumes the agent provides, parents first."""
    mounts = []
    for entry in container.get("volumeMounts") or []:
        volume = volumes.get(entry.get("name", ""))
        if volume is None:
            continue
        target = str(entry.get("mountPath") or "")
        if not target.startswith("/"):
            raise ContainerConfigError(f"mountPath {target!r} must be absolute")
        source = volume.path
        if entry.get("subPath"):
            source = source / _relative(str(entry["subPath"]))
        read_only = bool(entry.get("readOnly")) or volume.read_only
        mounts.append(Mount(str(source), os.path.normpath(target), read_only))
    return sorted(mounts, key=lambda m: PurePosixPath(m.target).parts)


def wrap(argv: list[str], plan: Path) -> list[str]:
    """The command line that runs `argv` with the mounts in `plan` (see mountns.py)."""
    return [sys.executable, "-I", "-S", str(MOUNTNS_SCRIPT), str(plan), "--", *argv]


def wrapped(argv: list[str]) -> bool:
    """Whether `argv` starts in a mount namespace of its own (`wrap`)."""
    return len(argv) > 3 and argv[3] == str(MOUNTNS_SCRIPT)


def write_plan(
    path: Path,
    mounts: list[Mount],
    *,
    keep: list[Path],
    scratch: Path,
    cwd: Path,
    working_dir: str | None,
) -> Path:
    """The plan mountns.py reads: mounts, directories that must stay visible, where to start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    plan = {
        "mounts": [m.as_dict() for m in mounts],
        "keep": [str(k) for k in keep],
        "scratch": str(scratch),
        "cwd": str(cwd),
        "workingDir": working_dir,
    }
    path.write_text(json.dumps(plan, indent=1))
    return path


# --- I/O: making the directories, reading claims ------------------------------------------


def _host_path(path: Path, kind: str) -> None:
    """Check or make a hostPath of type `kind`, as the kubelet does."""
    if kind in CREATES_DIRECTORY:
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    elif kind in MUST_EXIST:
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if not MUST_EXIST[kind](mode):
            raise VolumeNotReady(f"hostPath type check failed: {path} is not a {kind}")
    else:
        raise ContainerConfigError(f"unknown hostPath type {kind!r}")


def _claim_dir(rest: Rest, state_root: Path, node: str, namespace: str, claim: str) -> Path:
    try:
        pvc = rest.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    except ApiError as exc:
        if exc.status == 404:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found') from exc
        raise
    volume = (pvc.get("spec") or {}).get("volumeName")
    if (pvc.get("status") or {}).get("phase") != "Bound" or not volume:
        raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound')
    path = pv_dir(state_root, node, rest.get(f"/api/v1/persistentvolumes/{volume}"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_volumes(pod: Mapping[str, Any], state_root: Path, rest: Rest) -> dict[str, HostVolume]:
    """Each supported volume of the pod as a directory on this machine (made if needed)."""
    meta, spec = pod["metadata"], pod["spec"]
    node, uid, namespace = spec["nodeName"], meta["uid"], meta["namespace"]
    found: dict[str, HostVolume] = {}
    for volume in spec.get("volumes") or []:
        name = volume["name"]
        if volume.get("hostPath"):
            source = volume["hostPath"]
            path = hostpath_dir(state_root, node, str(source.get("path", "")))
            _host_path(path, str(source.get("type") or ""))
            found[name] = HostVolume(path)
        elif "emptyDir" in volume:
            path = emptydir_dir(state_root, uid, name)
            path.mkdir(parents=True, exist_ok=True)
            found[name] = HostVolume(path)
        elif volume.get("persistentVolumeClaim"):
            claim = volume["persistentVolumeClaim"]
            path = _claim_dir(rest, state_root, node, namespace, claim["claimName"])
            found[name] = HostVolume(path, read_only=bool(claim.get("readOnly")))
    return found
