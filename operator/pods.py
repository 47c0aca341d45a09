"""Raw pod accessors: what the operator reads off a model pod it manages.

Owner, key, annotations and kubelet state, from the pod as the API server stores it.
"""

from __future__ import annotations

from collections.abc import Sequence

from fovea.domain import constants as c
from fovea.domain.conditions import ConditionStatus, ConditionType
from fovea.operator.decisions import Key, Raw


def group_by_owner(pods: Sequence[Raw]) -> dict[str, list[Raw]]:
    out: dict[str, list[Raw]] = {}
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        owner = owner_uid(pod)
        if owner:
            out.setdefault(owner, []).append(pod)
    return out


def owner_uid(pod: Raw) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.SELECTION_KIND and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owner_name(pod: Raw) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.SELECTION_KIND and ref.get("controller"):
            return str(ref.get("name"))
    return None


def pod_key(pod: Raw) -> Key:
    return (str(pod["metadata"]["namespace"]), str(pod["metadata"]["name"]))


def meta_key(obj: Raw) -> Key:
    return (str(obj["metadata"].get("namespace") or ""), str(obj["metadata"].get("name") or ""))


def holds_gpu(pod: Raw) -> bool:
    return bool(annotation(pod, c.ANNOTATION_PLANNED_GPU))


def gpu_of(pod: Raw) -> tuple[str | None, str | None]:
    return (annotation(pod, c.ANNOTATION_PLANNED_NODE), annotation(pod, c.ANNOTATION_PLANNED_GPU))


def pod_config_error(pod: Raw) -> str | None:
    """The kubelet's message when the pod's container cannot be created as specified."""
    for status in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CreateContainerConfigError":
            return str(waiting.get("message") or "CreateContainerConfigError")
    return None


def pod_is_ready(pod: Raw) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == ConditionType.READY:  # Kubernetes' pod condition, same word
            return bool(cond.get("status") == ConditionStatus.TRUE)
    return False


def annotation(pod: Raw, key: str) -> str | None:
    value = (pod["metadata"].get("annotations") or {}).get(key)
    return None if value is None else str(value)
