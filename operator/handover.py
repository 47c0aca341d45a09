"""Make-before-break: when a selection's new pod is created and which of its pods stay.

A new pod starts while the old one still serves when both fit on the GPU; else the
old one goes first, and the new one waits for other selections' pods leaving its GPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from fovea.domain import constants as c
from fovea.domain import placement
from fovea.domain.nodes import unschedulable
from fovea.domain.warm import ANNOTATION_RUNTIME_HASH
from fovea.operator.decisions import Key, Raw, Selection
from fovea.operator.pods import (
    annotation,
    gpu_of,
    holds_gpu,
    owner_name,
    owner_uid,
    pod_is_ready,
    pod_key,
)


def handover(
    pod: Raw,
    existing: Raw | None,
    own_pods: list[Raw],
    spare_gib: float,
) -> tuple[bool, list[Key]]:
    """Make-before-break when both fit, break-before-make when they don't.

    Returns whether to create the new pod now, and which pods of the selection
    to keep for the moment (the desired one included). An old pod is kept
    while its successor loads if the successor's GPU still has room for it;
    otherwise the old pod goes first and the new one is created once the old
    one is gone. A spec change gives a new pod name, so it rolls the same way.
    """
    name = pod["metadata"]["name"]
    own = (pod["metadata"]["namespace"], name)
    # A pod the scheduler refused is on no node: it holds nothing and is not kept.
    old = [p for p in own_pods if p["metadata"]["name"] != name and unschedulable(p) is None]
    if existing is not None:
        # A pod of this name on its way out is an earlier incarnation (a switch back to a
        # model whose pod still drains): the pods serving now stay until its successor,
        # created once it is gone, is Ready.
        terminating = bool(existing["metadata"].get("deletionTimestamp"))
        if pod_is_ready(existing) and not terminating:
            return False, [own]
        going = [pod_key(p) for p in old if not p["metadata"].get("deletionTimestamp")]
        return False, [own, *going]
    room = spare_gib
    for p in old:  # an old pod on the same GPU takes room from its successor, going or not
        if holds_gpu(p) and gpu_of(p) == gpu_of(pod):
            room -= float(annotation(p, c.ANNOTATION_VRAM_GIB) or 0)
    if room < 0:
        # Break-before-make: old pods are deleted; the successor is created once they are
        # gone (a terminating pod's GPU memory is not released yet: it counts above).
        return False, [own]
    return True, [own] + [pod_key(p) for p in old]


def incarnation(pod: Raw, own_pods: Sequence[Raw]) -> Raw:
    """The pod to run for the selection: `pod`, under the name of the live pod that is it.

    Pod names are deterministic (a restarted operator finds its pods), so a switch back
    to a model whose pod is still draining would wait for the drain before it could
    create the pod again. Instead the new incarnation takes another name, derived from
    the draining pod's (its uid), and is found again by what it is: a live pod of the
    selection with the same spec hash, model and planned GPU is the pod, whatever its
    name. A warm pod is found by its runtime instead (`fovea.operator.warm.adopt`).
    """
    meta = pod["metadata"]
    if ANNOTATION_RUNTIME_HASH in (meta.get("annotations") or {}):
        return pod
    name = str(meta["name"])
    live = [p for p in own_pods if not p["metadata"].get("deletionTimestamp")]
    if any(p["metadata"]["name"] == name for p in live):
        return pod
    twin = next((p for p in live if _same_pod(p, pod)), None)
    if twin is not None:
        return _renamed(pod, str(twin["metadata"]["name"]))
    draining = next((p for p in own_pods if p["metadata"]["name"] == name), None)
    if draining is None:
        return pod
    uid = str(draining["metadata"].get("uid") or "")
    digest = hashlib.sha256(f"{name}/{uid}".encode()).hexdigest()[:8]
    return _renamed(pod, f"{name[:-8]}{digest}")  # the name ends in its own 8-hex digest


_IDENTITY = (c.ANNOTATION_SPEC_HASH, c.ANNOTATION_PLANNED_NODE, c.ANNOTATION_PLANNED_GPU)


def _same_pod(existing: Raw, wanted: Raw) -> bool:
    """Whether `existing` is `wanted` but for its name (same spec, model and planned GPU)."""
    same = all(annotation(existing, a) == annotation(wanted, a) for a in _IDENTITY)
    model = c.LABEL_MODEL
    labels = (existing["metadata"].get("labels") or {}, wanted["metadata"].get("labels") or {})
    return (
        same
        and annotation(wanted, c.ANNOTATION_SPEC_HASH) is not None
        and (labels[0].get(model) == labels[1].get(model))
    )


def _renamed(pod: Raw, name: str) -> Raw:
    return {**pod, "metadata": {**pod["metadata"], "name": name}}


def gpu_still_held(
    pod: Raw | None, result: placement.Plan, pods: Sequence[Raw], sel: Selection
) -> bool:
    """Make-before-break: other selections' pods still fill pod's GPU and are on their way out
    (moved or evicted by this plan, or terminating); the new pod waits for them to go.

    Not when one of them waits for this selection's own old pod in turn (two models
    swapping GPUs): that would wait for ever.
    """
    if pod is None or not holds_gpu(pod):
        return False
    here = gpu_of(pod)
    usage = result.usage(here[0] or "", int(here[1]) if here[1] else None)
    if usage is None:
        return False
    others = [p for p in pods if holds_gpu(p) and gpu_of(p) == here and owner_uid(p) != sel.uid]
    held = sum(float(annotation(p, c.ANNOTATION_VRAM_GIB) or 0) for p in others)
    if (
        held + float(annotation(pod, c.ANNOTATION_VRAM_GIB) or 0)
        <= usage.capacity_gib + placement.EPSILON
    ):
        return False
    mine = {gpu_of(p) for p in pods if owner_uid(p) == sel.uid}
    for p in others:
        if p["metadata"].get("deletionTimestamp"):
            return True
        owner = owner_name(p)
        target = result.placements.get(f"{p['metadata']['namespace']}/{owner}")
        slot = target.slot if target is not None else None
        going_to = (slot.node, str(slot.gpu_index)) if slot and slot.gpu_index is not None else None
        if going_to != here and going_to not in mine:
            return True
    return False
