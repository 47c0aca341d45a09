"""dra mode on the local cluster: the real operator (auto mode: the cluster publishes the
DeviceClass gpu.nvidia.com and ResourceSlices), the real kube-scheduler allocating, the node
agent exposing the allocated GPU to each pod.

Each selection's pod on a GPU references the selection's claim on that GPU. Two GPU
nodes, three GPUs (2x24 GiB on fovea-gpu-0, 1x80 GiB on fovea-gpu-1; threshold 0.8:
19.2, 19.2 and 64 GiB), five models whose sizes allow one packing (the two 24 GiB GPUs alike):
56 and 7 GiB on the 80 GiB GPU, 14 and 14 GiB on different 24 GiB GPUs, 5 GiB beside one of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from fovea.domain import dra
from kube_testing import Kube, eventually, tiny_catalog, tiny_option

SIZES = {"big": 56.0, "mid": 7.0, "left": 14.0, "right": 14.0, "small": 5.0}
WAIT_S = 240.0


def claims(kube: Kube) -> dict[str, dict[str, Any]]:
    items = client.CustomObjectsApi(kube.api).list_namespaced_custom_object(
        "resource.k8s.io", "v1", kube.namespace, "resourceclaims"
    )["items"]
    return {c["metadata"]["name"]: c for c in items if not c["metadata"].get("deletionTimestamp")}


def pod_env(pod: dict[str, Any]) -> dict[str, str]:
    """The environment of the pod's process (the agent's containerID is local://<pid>)."""
    cid = pod["status"]["containerStatuses"][0]["containerID"]
    pid = int(cid.removeprefix("local://"))
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def ready_with_device(kube: Kube, tasks: list[str]) -> dict[str, dict[str, Any]] | None:
    statuses = {t: kube.status(t) for t in tasks}
    if all(s.get("phase") == "Ready" and s.get("allocatedDevice") for s in statuses.values()):
        return statuses
    return None


def test_allocated_devices_match_the_plan_and_each_pod_sees_its_gpu(
    kube: Kube, operator: None
) -> None:
    kube.apply_catalog(tiny_catalog({t: {"m": tiny_option(v)} for t, v in SIZES.items()}))
    for task in SIZES:
        kube.select(task, "m", priority=500)
    statuses = eventually(lambda: ready_with_device(kube, list(SIZES)), timeout=WAIT_S)
    assert statuses, {t: kube.status(t).get("message") for t in SIZES}

    # The allocation (read from the claim) is the planned GPU, for every model.
    where = {}
    for task, status in statuses.items():
        device = status["allocatedDevice"]
        node, index = status["node"], status["plannedGpuIndex"]
        assert device["uuid"] == f"GPU-sim-{node}-{index}", (task, status)
        assert (device["index"], device["pool"], device["driver"]) == (index, node, dra.DRIVER)
        assert status["gpuIndex"] == index
        where[task] = (node, index)
    assert where["big"] == where["mid"] == ("fovea-gpu-1", 0)
    assert {where["left"], where["right"]} == {("fovea-gpu-0", 0), ("fovea-gpu-0", 1)}
    assert where["small"] in (where["left"], where["right"])

    # One claim per selection on its GPU, allocated that GPU and reserved for its pod.
    found = claims(kube)
    assert len(found) == 5
    for task, status in statuses.items():
        claim = found[status["allocatedDevice"]["claim"]]
        result = claim["status"]["allocation"]["devices"]["results"][0]
        assert (result["pool"], result["device"]) == (
            status["node"],
            status["allocatedDevice"]["device"],
        )
        pod = kube.pod(status["pod"])
        assert pod is not None
        reserved = {r["uid"] for r in claim["status"].get("reservedFor", [])}
        assert pod["metadata"]["uid"] in reserved, task
        # The pod's process sees exactly its GPU, by uuid, as the driver's CDI spec shows it.
        env = pod_env(pod)
        uuid = status["allocatedDevice"]["uuid"]
        assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == uuid, task

    # kubectl shows the allocated GPU.
    table = kube.kubectl(["-n", kube.namespace, "get", "msel", "big"]).stdout
    assert "GPU" in table.splitlines()[0] and "GPU-sim-fovea-gpu-1-0" in table

    # When a GPU's last pod goes, its claims go too; the other GPUs' stay.
    kube.select("big", None)
    big_claim = statuses["big"]["allocatedDevice"]["claim"]
    assert eventually(lambda: big_claim not in claims(kube), timeout=WAIT_S), claims(kube).keys()
    assert len(claims(kube)) == 4 and _on(claims(kube), "fovea-gpu-1") == 1  # "mid" there still
    kube.select("mid", None)
    assert eventually(lambda: _on(claims(kube), "fovea-gpu-1") == 0, timeout=WAIT_S)
    assert len(claims(kube)) == 3


def _on(found: dict[str, dict[str, Any]], node: str) -> int:
    """How many claims hold a device of `node` (their spec selects it; allocated or not)."""
    return sum(1 for c in found.values() if f"GPU-sim-{node}-" in json.dumps(c["spec"]))


def test_switching_between_the_device_plugin_and_dra_moves_models_make_before_break(
    kube: Kube,
    operator_factory: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube.apply_catalog(tiny_catalog({"det": {"m": tiny_option(4.0)}}))
    kube.select("det", "m")
    monkeypatch.setenv("FOVEA_OPERATOR_SHARING_MODE", "timeSliced")
    first = operator_factory()
    before = eventually(lambda: _ready(kube, "det"), timeout=WAIT_S)
    assert before and "allocatedDevice" not in before, kube.status("det")
    old_pod = before["pod"]
    assert "resourceClaims" not in (kube.pod(old_pod) or {}).get("spec", {})
    first.terminate()
    first.wait(timeout=30)

    monkeypatch.setenv("FOVEA_OPERATOR_SHARING_MODE", "auto")
    second = operator_factory()
    after = _moved(kube, old_pod, dra_=True)
    assert after["allocatedDevice"]["uuid"].startswith("GPU-sim-")
    assert eventually(lambda: kube.pod(old_pod) is None, timeout=60)
    claim = after["allocatedDevice"]["claim"]
    assert claim in claims(kube)

    # And back: the device plugin again, the claim gone with the last pod that held it.
    second.terminate()
    second.wait(timeout=30)
    monkeypatch.setenv("FOVEA_OPERATOR_SHARING_MODE", "timeSliced")
    operator_factory()
    back = _moved(kube, after["pod"], dra_=False)
    assert "allocatedDevice" not in back
    assert eventually(lambda: claim not in claims(kube), timeout=WAIT_S), claims(kube).keys()


def _moved(kube: Kube, old_pod: str, dra_: bool) -> dict[str, Any]:
    """The selection's status once a new pod replaced `old_pod` and is Ready; fails if the
    old pod went before its successor was Ready (make-before-break: the GPU has room)."""
    seen_gap = []

    def moved() -> dict[str, Any] | None:
        status = kube.status("det")
        new_pod = status.get("pod")
        ready = status.get("phase") == "Ready" and bool(status.get("allocatedDevice")) == dra_
        if new_pod != old_pod and not ready and kube.pod(old_pod) is None:
            seen_gap.append(new_pod)
        return status if new_pod != old_pod and ready else None

    after = eventually(moved, timeout=WAIT_S, interval=0.05)
    assert after, kube.status("det")
    assert not seen_gap, f"pod {old_pod} went before {seen_gap[0]} was Ready"
    return after


def _ready(kube: Kube, task: str) -> dict[str, Any] | None:
    status = kube.status(task)
    return status if status.get("phase") == "Ready" else None
