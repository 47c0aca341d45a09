"""Pod volumes on the local cluster: path mapping (pure), the mount namespace, real pods."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pod_testing import create_pod, get_pod, kubectl, wait_phase

from fovea.localcluster import volumes
from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.podspec import ContainerConfigError
from fovea.localcluster.rest import Rest
from fovea.localcluster.volumes import HostVolume, Mount
from kube_testing import eventually

STATE = Path("/state")

# --- pure -------------------------------------------------------------------------------------


def test_each_node_has_its_own_host_paths() -> None:
    cache = "/var/cache/fovea-models/weights"
    a = volumes.hostpath_dir(STATE, "fovea-gpu-0", cache)
    assert a == STATE / "nodes/fovea-gpu-0/hostpath/var/cache/fovea-models/weights"
    assert volumes.hostpath_dir(STATE, "fovea-gpu-1", cache) != a
    assert volumes.hostpath_dir(STATE, "n", "relative/x") == STATE / "nodes/n/hostpath/relative/x"
    with pytest.raises(ContainerConfigError, match=r"\.\."):
        volumes.hostpath_dir(STATE, "n", "/var/../../etc")


def test_provisioned_and_pv_directories() -> None:
    made = volumes.provisioned_dir(STATE, "ns", "weights", "u1")
    assert made == STATE / "volumes/ns-weights-u1"
    ours = {"metadata": {"name": "pv"}, "spec": {"hostPath": {"path": str(made)}}}
    assert volumes.pv_dir(STATE, "node", ours) == made
    elsewhere = {"metadata": {"name": "pv"}, "spec": {"local": {"path": "/mnt/disk"}}}
    assert volumes.pv_dir(STATE, "node", elsewhere) == STATE / "nodes/node/hostpath/mnt/disk"
    with pytest.raises(volumes.VolumeNotReady, match="neither hostPath nor local"):
        volumes.pv_dir(STATE, "node", {"metadata": {"name": "pv"}, "spec": {"nfs": {}}})
    assert volumes.VolumeNotReady.reason == "ContainerCreating"


def test_container_mounts_parents_first_with_subpaths_and_read_only() -> None:
    found = {
        "cache": HostVolume(Path("/h/cache")),
        "claim": HostVolume(Path("/h/claim"), read_only=True),
    }
    container = {
        "volumeMounts": [
            {"name": "cache", "mountPath": "/var/cache/w/sub/", "subPath": "models"},
            {"name": "claim", "mountPath": "/mnt/fovea-pvc/claim"},
            {"name": "cache", "mountPath": "/var/cache/w", "readOnly": True},
            {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io"},
        ]
    }
    assert volumes.container_mounts(container, found) == [
        Mount("/h/claim", "/mnt/fovea-pvc/claim", read_only=True),
        Mount("/h/cache", "/var/cache/w", read_only=True),
        Mount("/h/cache/models", "/var/cache/w/sub", read_only=False),
    ]
    assert volumes.container_mounts({}, found) == []
    with pytest.raises(ContainerConfigError, match="absolute"):
        volumes.container_mounts({"volumeMounts": [{"name": "cache", "mountPath": "x"}]}, found)


# --- the mount namespace (root on this machine, no cluster) -----------------------------------


def test_mounts_are_real_and_leave_no_trace_on_the_machine(tmp_path: Path) -> None:
    unique = f"fovea-test-{uuid.uuid4().hex[:8]}"
    weights, claim, scratch = tmp_path / "weights", tmp_path / "claim", tmp_path / "scratch"
    for path in (weights, claim, scratch):
        path.mkdir()
    (claim / "model.safetensors").write_text("weights\n")
    cache = f"/var/cache/{unique}/weights"
    top = f"/{unique}"
    plan = tmp_path / "plan.json"
    volumes.write_plan(
        plan,
        [
            Mount(str(weights), cache, read_only=False),
            Mount(str(claim), f"{top}/claim", read_only=True),
            Mount(str(weights), f"{top}/claim/nested", read_only=False),
        ],
        keep=[],
        scratch=scratch,
        cwd=tmp_path,
        working_dir=top,
    )
    script = (
        f"pwd; echo fetched > {cache}/entry; cat {top}/claim/model.safetensors; "
        f"ls {top}/claim/nested; touch {top}/claim/new 2>/dev/null || echo read-only; "
        "ls /usr/bin/env"
    )
    ran = subprocess.run(
        volumes.wrap(["/bin/sh", "-c", script], plan), capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [top, "weights", "entry", "read-only", "/usr/bin/env"]
    assert (weights / "entry").read_text() == "fetched\n"
    assert not Path(f"/var/cache/{unique}").exists() and not Path(top).exists()
    assert not list(scratch.iterdir())
    assert f" {top}" not in Path("/proc/self/mountinfo").read_text()


def test_the_pods_own_directory_stays_visible_under_a_volume(tmp_path: Path) -> None:
    pod_dir, empty = tmp_path / "pods" / "uid", tmp_path / "empty"
    pod_dir.mkdir(parents=True)
    empty.mkdir()
    (pod_dir / "kubeconfig").write_text("credentials\n")
    plan = volumes.write_plan(
        tmp_path / "plan.json",
        [Mount(str(empty), str(tmp_path), read_only=False)],  # as an emptyDir at /tmp would
        keep=[pod_dir],
        scratch=tmp_path / "scratch",
        cwd=pod_dir,
        working_dir=None,
    )
    script = f"cat kubeconfig; ls {tmp_path}"
    ran = subprocess.run(
        volumes.wrap(["/bin/sh", "-c", script], plan), capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["credentials", "pods"]


def test_a_failed_mount_ends_the_container_with_a_message(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps({
            "mounts": [{"source": str(tmp_path / "absent"), "target": "/x", "readOnly": False}],
            "scratch": str(tmp_path), "cwd": str(tmp_path), "workingDir": None,
        })
    )  # fmt: skip
    ran = subprocess.run(
        [sys.executable, "-I", "-S", str(volumes.MOUNTNS_SCRIPT), str(plan), "--", "/bin/true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 128
    assert "cannot mount the pod's volumes" in ran.stderr


# --- on the local cluster ---------------------------------------------------------------------


def sh(name: str, script: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    command = ["sh", "-c", script]
    return {"name": name, "image": "local", "command": command, "volumeMounts": mounts}


def run_on(
    rest: Rest, namespace: str, name: str, node: str, script: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Run `script` in a pod bound to `node` (with `spec`'s volumes) and return the pod."""
    mounts = spec.pop("mounts")
    body = {
        "restartPolicy": "Never",
        "nodeName": node,
        **spec,
        "containers": [sh("main", script, mounts)],
    }
    create_pod(rest, namespace, name, body)
    return wait_phase(rest, namespace, name, {"Succeeded", "Failed"})


def logs(kubeconfig: str, namespace: str, name: str) -> str:
    return kubectl(kubeconfig, "logs", "-n", namespace, name).stdout


def test_a_host_path_belongs_to_its_node(
    kubeconfig: str, namespace: str, rest: Rest, local_cluster: LocalCluster
) -> None:
    cache = f"/var/cache/fovea-test/{namespace}"

    def spec() -> dict[str, Any]:
        host = {"path": cache, "type": "DirectoryOrCreate"}
        return {
            "volumes": [{"name": "cache", "hostPath": host}],
            "mounts": [{"name": "cache", "mountPath": "/var/cache/fovea-models/weights"}],
        }

    weights = "/var/cache/fovea-models/weights"
    wrote = run_on(rest, namespace, "writer", "fovea-gpu-0", f"echo w > {weights}/model", spec())
    assert wrote["status"]["phase"] == "Succeeded", logs(kubeconfig, namespace, "writer")
    other = run_on(rest, namespace, "other", "fovea-gpu-1", f"ls -A {weights}", spec())
    assert other["status"]["phase"] == "Succeeded"
    assert logs(kubeconfig, namespace, "other") == ""
    same = run_on(rest, namespace, "same", "fovea-gpu-0", f"cat {weights}/model", spec())
    assert same["status"]["phase"] == "Succeeded"
    assert logs(kubeconfig, namespace, "same") == "w\n"
    state = local_cluster.state.root
    assert (state / f"nodes/fovea-gpu-0/hostpath{cache}/model").read_text() == "w\n"
    assert not (state / f"nodes/fovea-gpu-1/hostpath{cache}/model").exists()
    assert not Path(cache).exists() and not Path(weights).exists()


def test_a_read_only_mount_cannot_be_written(kubeconfig: str, namespace: str, rest: Rest) -> None:
    spec = {
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "mounts": [{"name": "scratch", "mountPath": "/weights", "readOnly": True}],
    }
    pod = run_on(rest, namespace, "ro", "fovea-cpu-0", "touch /weights/x", spec)
    assert pod["status"]["phase"] == "Failed"
    assert "Read-only file system" in logs(kubeconfig, namespace, "ro")


def test_a_pod_waits_for_its_claim_to_exist(namespace: str, rest: Rest) -> None:
    # Bound by hand: the scheduler would not place a pod whose claim is missing.
    spec = {
        "restartPolicy": "Never",
        "nodeName": "fovea-cpu-0",
        "volumes": [{"name": "w", "persistentVolumeClaim": {"claimName": "later"}}],
        "containers": [sh("main", "true", [{"name": "w", "mountPath": "/w"}])],
    }
    create_pod(rest, namespace, "waits", spec)

    def waiting() -> dict[str, Any] | None:
        statuses = get_pod(rest, namespace, "waits").get("status", {}).get("containerStatuses")
        return (statuses or [{}])[0].get("state", {}).get("waiting")

    state = eventually(waiting)
    assert state == {
        "reason": "ContainerCreating",
        "message": 'persistentvolumeclaim "later" not found',
    }
    rest.request(
        "POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", body=claim("later")
    )
    assert wait_phase(rest, namespace, "waits", {"Succeeded"})


def claim(name: str, mode: str = "ReadWriteOnce", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}, **spec},
    }


def test_a_shared_claim_is_provisioned_bound_and_seen_from_every_node(
    kubeconfig: str, namespace: str, rest: Rest, local_cluster: LocalCluster
) -> None:
    claims = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    rest.request("POST", claims, body=claim("weights", "ReadWriteMany"))

    def bound() -> dict[str, Any] | None:
        got = rest.get(f"{claims}/weights")
        return got if got.get("status", {}).get("phase") == "Bound" else None

    pvc = eventually(bound)
    assert pvc is not None, rest.get(f"{claims}/weights")
    assert pvc["spec"]["storageClassName"] == "fovea-local"  # the default class
    assert pvc["status"]["accessModes"] == ["ReadWriteMany"]
    pv = rest.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    directory = Path(pv["spec"]["hostPath"]["path"])
    uid = pvc["metadata"]["uid"]
    assert directory == local_cluster.state.root / "volumes" / f"{namespace}-weights-{uid}"

    def spec() -> dict[str, Any]:
        return {
            "volumes": [{"name": "w", "persistentVolumeClaim": {"claimName": "weights"}}],
            "mounts": [{"name": "w", "mountPath": "/mnt/fovea-pvc/weights"}],
        }

    script = "echo shared > /mnt/fovea-pvc/weights/model"
    assert run_on(rest, namespace, "a", "fovea-gpu-0", script, spec())["status"]["phase"] == (
        "Succeeded"
    )
    read = run_on(rest, namespace, "b", "fovea-gpu-1", "cat /mnt/fovea-pvc/weights/model", spec())
    assert read["status"]["phase"] == "Succeeded"
    assert logs(kubeconfig, namespace, "b") == "shared\n"
    assert (directory / "model").read_text() == "shared\n"
    # Deleting the claim deletes its volume and directory (reclaim policy Delete).
    for name in ("a", "b"):
        rest.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")
    rest.request("DELETE", f"{claims}/weights")

    def volume_gone() -> bool:
        names = [v["metadata"]["name"] for v in rest.get("/api/v1/persistentvolumes")["items"]]
        return pv["metadata"]["name"] not in names and not directory.exists()

    assert eventually(volume_gone)


def test_the_local_class_is_the_default(rest: Rest) -> None:
    found = rest.get("/apis/storage.k8s.io/v1/storageclasses/fovea-local")
    annotations = found["metadata"]["annotations"]
    assert annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    assert found["provisioner"] == "fovea.dev/local-path"
    assert found["volumeBindingMode"] == "Immediate"


def test_an_exec_probe_sees_the_containers_volumes(namespace: str, rest: Rest) -> None:
    container = sh("main", "touch /probe-flag/ready; exec sleep 600", [])
    container["volumeMounts"] = [{"name": "flag", "mountPath": "/probe-flag"}]
    probe = {"exec": {"command": ["test", "-e", "/probe-flag/ready"]}, "periodSeconds": 1}
    container["readinessProbe"] = probe
    spec = {"volumes": [{"name": "flag", "emptyDir": {}}], "containers": [container]}
    create_pod(rest, namespace, "probed", spec)

    def ready() -> bool:
        statuses = get_pod(rest, namespace, "probed").get("status", {}).get("containerStatuses")
        return bool((statuses or [{}])[0].get("ready"))

    assert eventually(ready)
    assert not Path("/probe-flag").exists()
