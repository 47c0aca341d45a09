"""The local cluster's storage: the default StorageClass `fovea-local` and its provisioner.

As rancher's local-path-provisioner does on a one-machine cluster: for each
PersistentVolumeClaim of class `fovea-local` that is still pending, it makes
a directory `<state>/volumes/<namespace>-<claim>-<uid>` and a `hostPath`
PersistentVolume for it, pre-bound to the claim (`claimRef`), which
kube-controller-manager's PV binder then binds. `ReadWriteOnce`,
`ReadWriteMany` and `ReadOnlyMany` all work: every node is this machine, so
every node sees the same directory (the node agent mounts it as is). Binding
is `Immediate`. When a claim is deleted its volume is `Released`; the
provisioner then deletes the directory and the PersistentVolume (reclaim
policy `Delete`). Sizes are recorded, not enforced.

Runs in the cluster's supervisor (`LocalCluster`), with the node agent's
credentials: list, then watch, claims and volumes; relist on expiry or error.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fovea.localcluster.rest import MERGE_PATCH, ApiError, Rest
from fovea.localcluster.state import StateDir
from fovea.localcluster.volumes import provisioned_dir

STORAGE_CLASS = "fovea-local"
PROVISIONER = "fovea.dev/local-path"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
DEFAULT_SIZE = "1Gi"
WATCH_TIMEOUT_S = 240
RETRY_S = 1.0

CLAIMS = "/api/v1/persistentvolumeclaims"
VOLUMES = "/api/v1/persistentvolumes"


def storage_class() -> dict[str, Any]:
    """The `fovea-local` StorageClass, the cluster's default."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def wants_volume(claim: Mapping[str, Any]) -> bool:
    """A claim of our class that no volume has been made or bound for yet."""
    spec = claim.get("spec") or {}
    return (
        spec.get("storageClassName") == STORAGE_CLASS
        and not spec.get("volumeName")
        and (claim.get("status") or {}).get("phase", "Pending") == "Pending"
        and not claim["metadata"].get("deletionTimestamp")
    )


def volume_name(claim: Mapping[str, Any]) -> str:
    """`pvc-<claim uid>`, as dynamic provisioners name their volumes."""
    return f"pvc-{claim['metadata']['uid']}"


def volume_for(claim: Mapping[str, Any], state_root: Path) -> dict[str, Any]:
    """The hostPath PersistentVolume for `claim`, pre-bound to it."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", DEFAULT_SIZE)
    path = provisioned_dir(state_root, meta["namespace"], meta["name"], meta["uid"])
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume_name(claim), "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
        },
    }


def to_delete(volume: Mapping[str, Any], volumes_dir: Path) -> Path | None:
    """The directory of a released volume of ours whose policy is Delete, else None."""
    meta, spec = volume["metadata"], volume.get("spec") or {}
    if (meta.get("annotations") or {}).get(PROVISIONED_BY) != PROVISIONER:
        return None
    if (volume.get("status") or {}).get("phase") not in ("Released", "Failed"):
        return None
    if spec.get("persistentVolumeReclaimPolicy") != "Delete" or meta.get("deletionTimestamp"):
        return None
    path = Path((spec.get("hostPath") or {}).get("path", ""))
    return path if path.parent == volumes_dir else None


class LocalPathProvisioner:
    """Serves StorageClass `fovea-local` until `stop()`."""

    def __init__(self, rest: Rest, state: StateDir, log: Callable[[str], None]) -> None:
        self.rest = rest
        self.state = state
        self.log = log
        self._stop = threading.Event()

    def start(self) -> None:
        """Create (or refresh) the StorageClass, then follow claims and volumes."""
        self.ensure_storage_class()
        for path, handle in ((CLAIMS, self._claim), (VOLUMES, self._volume)):
            listed = threading.Event()
            threading.Thread(
                target=self._follow,
                args=(path, handle, listed),
                name=f"provisioner-{path.rsplit('/', 1)[-1]}",
                daemon=True,
            ).start()
            listed.wait(30)

    def stop(self) -> None:
        self._stop.set()

    def ensure_storage_class(self) -> None:
        body = storage_class()
        try:
            self.rest.request("POST", "/apis/storage.k8s.io/v1/storageclasses", body=body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            self.rest.request(
                "PATCH",
                f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}",
                body={"metadata": body["metadata"]},
                content_type=MERGE_PATCH,
            )

    def _follow(
        self, path: str, handle: Callable[[dict[str, Any]], None], listed: threading.Event
    ) -> None:
        """List, then watch, `path`; hand every object seen to `handle`."""
        while not self._stop.is_set():
            try:
                items = self.rest.get(path)
                for item in items.get("items", []):
                    self._guard(handle, item)
                listed.set()
                version = items["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    for event in self.rest.watch(path, version, WATCH_TIMEOUT_S):
                        if self._stop.is_set():
                            return
                        if event.get("type") == "ERROR":
                            raise _Relist
                        obj = event.get("object", {})
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._guard(handle, obj)
            except _Relist:
                continue
            except Exception as exc:  # the watch must outlive API hiccups
                if not self._stop.is_set():
                    self.log(f"local-path provisioner: watch of {path} failed (retrying): {exc!r}")
                    self._stop.wait(RETRY_S)

    def _guard(self, handle: Callable[[dict[str, Any]], None], obj: dict[str, Any]) -> None:
        try:
            handle(obj)
        except Exception as exc:
            name = obj.get("metadata", {}).get("name")
            self.log(f"local-path provisioner: {name}: {exc!r}")

    def _claim(self, claim: dict[str, Any]) -> None:
        if not wants_volume(claim):
            return
        volume = volume_for(claim, self.state.root)
        Path(volume["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
        try:
            self.rest.request("POST", VOLUMES, body=volume)
        except ApiError as exc:
            if exc.status != 409:  # made already (an event seen twice)
                raise
            return
        meta = claim["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        self.log(f"local-path provisioner: made {volume_name(claim)} for claim {where}")

    def _volume(self, volume: dict[str, Any]) -> None:
        path = to_delete(volume, self.state.volumes)
        if path is None:
            return
        shutil.rmtree(path, ignore_errors=True)
        try:
            self.rest.request("DELETE", f"{VOLUMES}/{volume['metadata']['name']}")
        except ApiError as exc:
            if exc.status != 404:
                raise


class _Relist(Exception):
    """The watch ended in a way that needs a fresh list."""
