"""The local-path provisioner's decisions (pure); tests/localcluster/test_volumes.py runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fovea.localcluster import provisioner as p

STATE = Path("/state")


def claim(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "weights", "namespace": "ns", "uid": "u1"},
        "spec": {"storageClassName": p.STORAGE_CLASS, **spec},
        "status": {"phase": "Pending"},
    }


def test_only_pending_claims_of_the_class_want_a_volume() -> None:
    assert p.wants_volume(claim())
    assert not p.wants_volume(claim(storageClassName="other"))
    assert not p.wants_volume(claim(volumeName="pv-1"))
    bound = {**claim(), "status": {"phase": "Bound"}}
    assert not p.wants_volume(bound)
    going = claim()
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not p.wants_volume(going)


def test_the_volume_is_a_host_path_pre_bound_to_the_claim() -> None:
    wanted = claim(accessModes=["ReadWriteMany"], resources={"requests": {"storage": "50Gi"}})
    volume = p.volume_for(wanted, STATE)
    assert volume["metadata"]["name"] == "pvc-u1"
    assert volume["metadata"]["annotations"] == {p.PROVISIONED_BY: p.PROVISIONER}
    spec = volume["spec"]
    assert spec["claimRef"] == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": "ns",
        "name": "weights",
        "uid": "u1",
    }
    assert spec["hostPath"] == {"path": "/state/volumes/ns-weights-u1", "type": "DirectoryOrCreate"}
    assert spec["accessModes"] == ["ReadWriteMany"] and spec["capacity"] == {"storage": "50Gi"}
    assert spec["storageClassName"] == p.STORAGE_CLASS
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    defaults = p.volume_for(claim(), STATE)["spec"]
    assert defaults["accessModes"] == ["ReadWriteOnce"] and defaults["capacity"]["storage"] == "1Gi"


def test_released_volumes_of_ours_are_deleted_and_no_others() -> None:
    released = p.volume_for(claim(), STATE)
    released["status"] = {"phase": "Released"}
    assert p.to_delete(released, STATE / "volumes") == STATE / "volumes/ns-weights-u1"
    bound = {**released, "status": {"phase": "Bound"}}
    assert p.to_delete(bound, STATE / "volumes") is None
    foreign = {**released, "metadata": {"name": "pv", "annotations": {}}}
    assert p.to_delete(foreign, STATE / "volumes") is None
    retained = {**released, "spec": {**released["spec"], "persistentVolumeReclaimPolicy": "Retain"}}
    assert p.to_delete(retained, STATE / "volumes") is None
    outside = {**released, "spec": {**released["spec"], "hostPath": {"path": "/etc"}}}
    assert p.to_delete(outside, STATE / "volumes") is None


def test_the_storage_class_is_the_default() -> None:
    made = p.storage_class()
    assert made["metadata"]["annotations"] == {p.DEFAULT_CLASS: "true"}
    assert (made["provisioner"], made["volumeBindingMode"]) == (p.PROVISIONER, "Immediate")
