"""Make-before-break and a pod's incarnations: pure decisions over raw pods."""

from __future__ import annotations

from typing import Any

from fovea.domain import constants as c
from fovea.operator.handover import handover, incarnation

NS = "ns"


def _pod(
    name: str,
    model: str = "small",
    gpu: str = "0",
    vram: float = 4.0,
    spec_hash: str = "h1",
    draining: bool = False,
    uid: str = "pod-uid",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "uid": uid,
        "labels": {c.LABEL_MODEL: model},
        "annotations": {
            c.ANNOTATION_PLANNED_NODE: "gpu-0",
            c.ANNOTATION_PLANNED_GPU: gpu,
            c.ANNOTATION_VRAM_GIB: f"{vram:g}",
            c.ANNOTATION_SPEC_HASH: spec_hash,
        },
    }
    if draining:
        meta["deletionTimestamp"] = "2026-12-08T00:00:00Z"
    return {"metadata": meta, "spec": {}, "status": {}}


def test_a_draining_pod_on_another_gpu_does_not_hold_the_new_one_back() -> None:
    new = _pod("det-small-aaaaaaaa", gpu="0")
    elsewhere = _pod("det-big-bbbbbbbb", model="big", gpu="1", draining=True)
    create, keep = handover(new, None, [elsewhere], spare_gib=10.0)
    assert create and (NS, "det-small-aaaaaaaa") in keep


def test_a_draining_pod_on_the_same_gpu_counts_until_it_is_gone() -> None:
    new = _pod("det-small-aaaaaaaa", vram=8.0)
    draining = _pod("det-big-bbbbbbbb", model="big", vram=8.0, draining=True)
    assert handover(new, None, [draining], spare_gib=10.0)[0]  # 10 - 8 >= 0: both fit
    create, keep = handover(new, None, [draining], spare_gib=6.0)  # 6 - 8 < 0
    assert not create and keep == [(NS, "det-small-aaaaaaaa")]


def test_a_switch_back_while_the_models_pod_drains_takes_another_name() -> None:
    wanted = _pod("det-small-aaaaaaaa")
    draining = _pod("det-small-aaaaaaaa", draining=True, uid="first")
    serving = _pod("det-big-bbbbbbbb", model="big", spec_hash="h2")
    chosen = incarnation(wanted, [draining, serving])
    name = chosen["metadata"]["name"]
    assert name != "det-small-aaaaaaaa" and name.startswith("det-small-") and len(name) == 18
    assert chosen["spec"] == wanted["spec"]
    # The same world gives the same name (a restarted operator creates no second pod) ...
    assert incarnation(wanted, [draining, serving])["metadata"]["name"] == name
    # ... and once that pod exists it is the pod, draining predecessor or not.
    created = _pod(name)
    assert incarnation(wanted, [draining, created, serving])["metadata"]["name"] == name
    assert incarnation(wanted, [created, serving])["metadata"]["name"] == name


def test_a_live_pod_of_the_name_or_none_at_all_keeps_the_name() -> None:
    wanted = _pod("det-small-aaaaaaaa")
    assert incarnation(wanted, [])["metadata"]["name"] == "det-small-aaaaaaaa"
    assert incarnation(wanted, [_pod("det-small-aaaaaaaa")]) is wanted
    # Another spec (or GPU, or model) is not the pod: the wanted name stands.
    other = _pod("det-small-cccccccc", spec_hash="h9")
    assert incarnation(wanted, [other])["metadata"]["name"] == "det-small-aaaaaaaa"
