"""Pure builder of model-server pods: typed inputs in, a pod manifest dict out.

No I/O, no clock, no random names: the same inputs always give the same pod,
so every retry of the operator is harmless (create-or-409).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fovea.domain import constants as c
from fovea.domain import dra
from fovea.domain.endpoints import label_value
from fovea.domain.image_refs import normalize_image
from fovea.domain.nodes import (
    DEFAULT_MEMORY_GIB,
    avoid_annotation,
    model_pod_tolerations,
    pod_requests,
)
from fovea.domain.resources import ModelOption, SharingMode
from fovea.domain.units import GIB, MIB
from fovea.domain.warm import (
    ANNOTATION_RUNTIME_HASH,
    ANNOTATION_WARM_OPTIONS,
    ENV_KEEP_WARM_SECONDS,
    ENV_MEMORY_REQUEST_GB,
    ENV_WARM_OPTIONS,
    WarmGroup,
)
from fovea.operator.images import PROJECT_IMAGES
from fovea.operator.weights_pod import WeightsSettings, add_weights

MAX_NAME = 63
GRACE_SECONDS = 30  # the pod's terminationGracePeriodSeconds: its drain fits inside


@dataclass(frozen=True)
class Target:
    """Where the planner put a selection's model."""

    node: str | None  # None: wherever the scheduler puts it (CPU pods only)
    gpu_index: int | None  # None: CPU (fallback or policy)

    @property
    def on_gpu(self) -> bool:
        return self.gpu_index is not None


@dataclass(frozen=True)
class SelectionRef:
    namespace: str
    name: str
    uid: str
    task: str
    model: str


@dataclass(frozen=True)
class PodSettings:
    """Operator-wide knobs of model pods (from the operator's settings)."""

    image: str = "ghcr.io/fovea-models/model-pod:0.1.0"
    service_account: str = "fovea-model-pod"
    # None: `dra` when the cluster speaks DRA for GPUs, else `timeSliced` (decided per pass).
    sharing_mode: SharingMode | None = SharingMode.TIME_SLICED
    dra_sharing: dra.DraSharing = dra.DraSharing.TIME_SLICING  # dra mode: the claims' config
    # Memory request when an option declares no CPU footprint (GPU pods still
    # need host memory to stage weights). CPU requests: `fovea.domain.nodes`.
    default_memory_gib: float = DEFAULT_MEMORY_GIB
    startup_seconds: int = 900  # a 16 GiB VLM can take minutes to load
    # Images a catalog option may name (operator/images.py); `image` above always runs.
    allowed_images: tuple[str, ...] = PROJECT_IMAGES
    # Warm switches (docs/architecture.md): a pod per warm group, switching in place.
    warm_switches: bool = False
    keep_warm_seconds: float = 600.0


def pod_name(sel: SelectionRef, option: ModelOption, target: Target, spec_hash: str = "") -> str:
    """Deterministic name: a new model, target or pod spec gives a new pod (make-before-break)."""
    parts: list[Any] = [sel.uid, sel.model, option.model_id, target.node, target.gpu_index]
    digest = _digest([*parts, spec_hash] if spec_hash else parts)[:8]
    stem = re.sub(r"[^a-z0-9-]", "-", f"{sel.name}-{sel.model}".lower()).strip("-")
    return f"{stem[: MAX_NAME - 9].rstrip('-')}-{digest}"


def gpu_limits(option: ModelOption, mode: SharingMode | None) -> dict[str, str]:
    """The extended resources a GPU pod asks for under each sharing mode (dra: none, a claim)."""
    if mode == SharingMode.DRA:
        return {}
    if mode == SharingMode.MIG:
        profile = option.mig_profile or "1g.10gb"
        return {f"nvidia.com/mig-{profile}": "1"}
    limits = {c.RESOURCE_GPU: "1"}
    if mode == SharingMode.HAMI:
        limits[c.RESOURCE_HAMI_GPUMEM] = str(max(1, round(option.vram_gib * GIB / MIB)))
    return limits


def build_pod(
    sel: SelectionRef,
    option: ModelOption,
    target: Target,
    settings: PodSettings,
    *,
    batch_size: int = 1,
    avoid_nodes: Iterable[str] = (),
    claim: str | None = None,
    weights: WeightsSettings | None = None,
    warm: WarmGroup | None = None,
) -> dict[str, Any]:
    """The model-server pod of one selection on its planned target.

    `batch_size` is the warm-up batch: the catalog's `default_batch_size`.
    `avoid_nodes`: nodes where the scheduler refused this selection's pods,
    carried on the pod (`fovea.dev/avoid-nodes`) so the planner keeps avoiding them.
    `claim`: dra mode, the ResourceClaim that pins the planned GPU (`fovea.domain.dra`).
    `weights`: the catalog's weights settings; an option with `weights:` gets its
    `fetch-weights` init container and cache (`fovea.operator.weights_pod`).
    `warm`: the option's warm group (`fovea.domain.warm`): the pod may serve any
    member in place, requests the largest member's memory, carries the group's
    label and the hash of its runtime (the spec without its model) for adoption.
    The name covers the spec's hash (`fovea.dev/spec-hash`): any change to the
    spec (image, env, resources) gives a new pod, which the operator rolls out;
    except the operator's own model-pod image, whose tag changes with each release
    (`_release_neutral`): a running pod keeps its image until something else rolls it.
    """
    device = "cuda:0" if target.on_gpu else "cpu"  # the device plugin exposes one GPU as cuda:0
    # Exactly the requests the planner counted against the node (one function for both).
    sized = option if warm is None else option.model_copy(update={"cpu_memory_gb": warm.memory_gb})
    requests = pod_requests(sized, settings.default_memory_gib)
    resources: dict[str, dict[str, str]] = {
        "requests": requests.requests(),
        "limits": requests.limits(),
    }
    if target.on_gpu:
        limits = gpu_limits(option, settings.sharing_mode)
        resources["limits"].update(limits)
        resources["requests"].update(limits)
    env = [
        {"name": c.ENV_TASK, "value": sel.task},
        {"name": c.ENV_MODEL, "value": sel.model},
        {"name": c.ENV_MODEL_ID, "value": option.model_id},
        {"name": c.ENV_FRAMEWORK, "value": str(option.framework)},
        {"name": c.ENV_DEVICE, "value": device},
        {"name": c.ENV_SELECTION, "value": sel.name},
        {"name": c.ENV_NAMESPACE, "value": sel.namespace},
        {"name": c.ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": c.ENV_DECLARED_VRAM_GB, "value": f"{option.vram_gib:g}"},
        {"name": c.ENV_BATCH_SIZE, "value": str(batch_size)},
        {"name": c.ENV_ALLOW_RANDOM_WEIGHTS, "value": "1" if option.allow_random_weights else "0"},
        {"name": c.ENV_ARCHITECTURE, "value": option.architecture or ""},
        {"name": c.ENV_PORT, "value": str(c.MODEL_POD_PORT)},
        # The drain on SIGTERM (docs/inference.md) ends before the kubelet's SIGKILL.
        {"name": c.ENV_TERMINATION_GRACE_SECONDS, "value": str(GRACE_SECONDS)},
    ]
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5}
    # Readiness decides when the pod joins its Service's endpoints (docs/inference.md):
    # probed each second, so a switch publishes the new model within about a second.
    readiness = {**probe, "periodSeconds": 1, "failureThreshold": 3}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "",  # set below, from the spec's hash
            "namespace": sel.namespace,
            "labels": {
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_COMPONENT: c.COMPONENT_MODEL_POD,
                c.LABEL_SELECTION: label_value(sel.name),
                c.LABEL_TASK: label_value(sel.task),
                c.LABEL_MODEL: label_value(sel.model),
            },
            "annotations": {
                c.ANNOTATION_PLANNED_NODE: target.node or "",
                c.ANNOTATION_PLANNED_GPU: "" if target.gpu_index is None else str(target.gpu_index),
                c.ANNOTATION_VRAM_GIB: f"{option.vram_gib if target.on_gpu else 0:g}",
                **avoid_annotation(avoid_nodes),
            },
            "ownerReferences": [
                {
                    "apiVersion": c.API_VERSION,
                    "kind": c.SELECTION_KIND,
                    "name": sel.name,
                    "uid": sel.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": settings.service_account,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            **_affinity(target.node),
            "tolerations": model_pod_tolerations(pinned=target.node is not None),
            "containers": [
                {
                    "name": "model-server",
                    "image": option.image or settings.image,
                    "command": ["fovea-models", "model-pod"],
                    "env": env,
                    "ports": [{"name": "http", "containerPort": c.MODEL_POD_PORT}],
                    # Pod Security "restricted": the images run as uid 10001.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "resources": resources,
                    "startupProbe": {
                        **readiness,
                        "failureThreshold": max(1, settings.startup_seconds),
                    },
                    "readinessProbe": readiness,
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 10,
                        "failureThreshold": 3,
                    },
                }
            ],
        },
    }
    add_weights(pod["spec"], option, weights or WeightsSettings(), settings.image)
    if claim is not None and target.on_gpu:  # dra mode: the claim pins the planned GPU
        pod["spec"]["resourceClaims"], container_claims = dra.pod_claims(claim)
        pod["spec"]["containers"][0]["resources"]["claims"] = container_claims
    if warm is not None:
        _make_warm(pod, warm, settings)
    spec_hash = _digest([_release_neutral(pod["spec"], settings.image)])[:16]
    pod["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH] = spec_hash
    pod["metadata"]["name"] = pod_name(sel, option, target, spec_hash)
    return pod


# What names the model in a pod's environment: a warm pod's runtime is the spec without it.
MODEL_ENV = frozenset(
    {
        c.ENV_MODEL,
        c.ENV_MODEL_ID,
        c.ENV_DECLARED_VRAM_GB,
        c.ENV_ARCHITECTURE,
        c.ENV_ALLOW_RANDOM_WEIGHTS,
    }
)


def runtime_hash(spec: dict[str, Any], release_image: str) -> str:
    """The hash of a pod spec without what names its model: equal for every member of a
    warm group on one target, so the selection's running pod can take the next model."""
    spec = _release_neutral(spec, release_image)
    for container in spec.get("containers") or []:
        container["env"] = [e for e in container.get("env", []) if e["name"] not in MODEL_ENV]
    return _digest([spec])[:16]


def _make_warm(pod: dict[str, Any], warm: WarmGroup, settings: PodSettings) -> None:
    meta, container = pod["metadata"], pod["spec"]["containers"][0]
    container["env"] += [
        {"name": ENV_WARM_OPTIONS, "value": warm.env_value()},
        {"name": ENV_KEEP_WARM_SECONDS, "value": f"{settings.keep_warm_seconds:g}"},
        {"name": ENV_MEMORY_REQUEST_GB, "value": f"{warm.memory_gb:g}"},
    ]
    meta["labels"][c.LABEL_MODEL] = warm.label
    meta["annotations"][ANNOTATION_WARM_OPTIONS] = ",".join(warm.names)
    meta["annotations"][ANNOTATION_RUNTIME_HASH] = runtime_hash(pod["spec"], settings.image)


def pod_images(option: ModelOption, settings: PodSettings) -> frozenset[str]:
    """Every image a selection's pod runs (`build_pod`'s), normalized as nodes list them.

    The model server's (the option's own or the operator's), and the operator's
    for the `fetch-weights` init container when the option has weights.
    """
    images = {option.image or settings.image}
    if option.weights is not None:
        images.add(settings.image)
    return frozenset(normalize_image(image) for image in images)


def _release_neutral(spec: dict[str, Any], release_image: str) -> dict[str, Any]:
    """The spec as hashed: the operator's own model-pod image (FOVEA_OPERATOR_MODEL_POD_IMAGE,
    whose tag is the release) without its tag or digest, so an upgrade of fovea-models alone
    renames, and so replaces, no running model pod (docs/installation.md#upgrade); another
    repository still does. An image the catalog's option names is hashed as it is."""
    spec = dict(spec)  # copies only what changes (a deep copy was a third of a pass's time)
    for key in ("initContainers", "containers"):
        if spec.get(key):
            spec[key] = [
                {**container, "image": _repository(release_image)}
                if container.get("image") == release_image
                else container
                for container in spec[key]
            ]
    return spec


def _repository(image: str) -> str:
    """An image reference without its tag and digest (registry:port/name:tag@sha256:...)."""
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def _affinity(node: str | None) -> dict[str, Any]:
    """Pin the pod to the planned node: the scheduler still checks resources and taints."""
    if node is None:
        return {}
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    required = {"nodeSelectorTerms": [term]}
    return {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    }


def _digest(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
