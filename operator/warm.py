"""Warm switches in the operator's pass (docs/architecture.md, "Warm switches"): pure.

With `warm_switches` on, a selection whose option has a warm group
(`fovea.domain.warm`) gets a pod that can serve every member; a switch to
another member keeps that pod (`adopt`), whose process follows the selection
and loads the model in place, and the planner counts the group's memory
(`fovea.domain.demand.wanted`). Everything else is the ordinary pod per selected model.
"""

from __future__ import annotations

from collections.abc import Sequence

from fovea.domain import constants as c
from fovea.domain import demand
from fovea.domain.dra import DraSharing
from fovea.domain.nodes import unschedulable
from fovea.domain.resources import SharingMode
from fovea.domain.warm import (
    ANNOTATION_RUNTIME_HASH,
    WARM_LABEL_PREFIX,
    WarmGroup,
    adoptable,
)
from fovea.operator.decisions import Raw, Resolved
from fovea.operator.pods import annotation
from fovea.operator.podspec import PodSettings


def group_of(r: Resolved, settings: PodSettings, sharing: SharingMode | None) -> WarmGroup | None:
    """The warm group of a resolved selection's option, when warm switches are on."""
    if not settings.warm_switches or r.option is None or r.catalog is None or r.sel.spec is None:
        return None
    return demand.warm_group_of(
        r.catalog,
        r.sel.spec,
        sharing=sharing,
        default_memory_gib=settings.default_memory_gib,
        dra_time_sliced=settings.dra_sharing == DraSharing.TIME_SLICING,
    )


def adopt(pod: Raw, own_pods: Sequence[Raw]) -> Raw:
    """The pod that serves the selection: `pod` itself when it exists (or is not warm), else
    a running pod of the same warm runtime with room for the model, which switches in place."""
    wanted = annotation(pod, ANNOTATION_RUNTIME_HASH)
    if not wanted:
        return pod
    name = pod["metadata"]["name"]
    if any(p["metadata"]["name"] == name for p in own_pods):
        return pod
    vram = float(annotation(pod, c.ANNOTATION_VRAM_GIB) or 0)
    for p in own_pods:
        if unschedulable(p) is not None:
            continue
        if adoptable(
            annotation(p, ANNOTATION_RUNTIME_HASH) or None,
            wanted,
            float(annotation(p, c.ANNOTATION_VRAM_GIB) or 0),
            vram,
            bool(p["metadata"].get("deletionTimestamp")),
        ):
            return p
    return pod


def served_label(r: Resolved, settings: PodSettings) -> str | None:
    """The fovea.dev/model label of the pods that answer a selection: its warm group's, or
    (None) the selected model's."""
    group = group_of(r, settings, settings.sharing_mode)
    return group.label if group is not None else None


def serving_model(selector_model: str | None, runtime: Raw, pod: str | None) -> str | None:
    """status.endpoint.servingModel: where the Service selects a warm group, the model that
    its pod says it serves (None until the pod the selection wants has said)."""
    if selector_model is None or not selector_model.startswith(WARM_LABEL_PREFIX):
        return selector_model
    if pod is None or runtime.get("pod") != pod:
        return None
    model = runtime.get("servingModel")
    return str(model) if model else None
