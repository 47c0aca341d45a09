"""What the scheduler checks on a node, as the placement planner counts it.

Pure: Node and Pod objects (plain dicts) in, typed capacities out. Two things
live here so that there is one source of truth for each:

- `pod_requests(option)`: the CPU and memory a model pod requests. The pod
  builder (`fovea.operator.podspec`) sets exactly these requests and the
  planner counts exactly these, so a plan never asks a node for more than
  the scheduler will give.
- `node_capacities(nodes, pods)`: for every Ready, schedulable node, what is
  left for model pods: allocatable CPU, memory, pods and GPU slots
  (`nvidia.com/gpu`, time-slicing replicas included) minus the requests of
  the pods already bound there that the planner does not place itself, and
  whether model pods tolerate the node's taints, and, on a node tainted
  `fovea.dev/preloaded-images` (it pulls nothing), the images it holds.

The CPU request of a model pod depends on what serves the model:

| framework | CPU request |
| --- | --- |
| `pytorch`, `ultralytics` | 500m |
| `transformers`, `whisper`, `faster_whisper`, `pyannote` | 1 |
| `sglang`, `vllm` (engine servers) | 2 |
| `external_api` | no pod |

Memory: the option's `cpu_memory_gb`, else `DEFAULT_MEMORY_GIB` (2 GiB, what
a GPU pod needs on the host to stage weights); the limit is 1.5 times that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fovea.domain import constants as c
from fovea.domain import dra
from fovea.domain.gpus import node_usable
from fovea.domain.image_refs import normalize_image
from fovea.domain.resources import Framework, ModelOption
from fovea.domain.units import parse_quantity

DEFAULT_MEMORY_GIB = 2.0
MEMORY_LIMIT_FACTOR = 1.5
CPU_MILLIS_BY_FRAMEWORK: Mapping[Framework, int] = {
    Framework.PYTORCH: 500,
    Framework.ULTRALYTICS: 500,
    Framework.TRANSFORMERS: 1000,
    Framework.WHISPER: 1000,
    Framework.FASTER_WHISPER: 1000,
    Framework.PYANNOTE: 1000,
    Framework.SGLANG: 2000,
    Framework.VLLM: 2000,
    Framework.EXTERNAL_API: 0,
}
DEFAULT_CPU_MILLIS = 500

# Model pods tolerate exactly these taints; podspec uses them. GPU nodes usually carry
# the first. The second marks nodes that run only the images they hold: a pod pinned
# to its planned node tolerates it (the planner checked the images); an unpinned one
# does not, or the scheduler could send it where its image is missing.
_GPU_TOLERATION: Mapping[str, str] = {
    "key": c.TAINT_GPU,
    "operator": "Exists",
    "effect": "NoSchedule",
}
_PRELOADED_TOLERATION: Mapping[str, str] = {
    "key": c.TAINT_PRELOADED_IMAGES,
    "operator": "Exists",
    "effect": "NoSchedule",
}
MODEL_POD_TOLERATIONS: tuple[Mapping[str, str], ...] = (_GPU_TOLERATION, _PRELOADED_TOLERATION)


def model_pod_tolerations(pinned: bool) -> list[dict[str, str]]:
    """A model pod's tolerations: all of `MODEL_POD_TOLERATIONS` when pinned to a node."""
    chosen = MODEL_POD_TOLERATIONS if pinned else (_GPU_TOLERATION,)
    return [dict(t) for t in chosen]


_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
_TERMINAL_PHASES = ("Succeeded", "Failed")
UNLIMITED = 1 << 62


@dataclass(frozen=True, slots=True)
class PodRequests:
    """What one model pod requests: CPU in millicores, memory in MiB."""

    cpu_millis: int
    memory_mib: int

    def requests(self) -> dict[str, str]:
        """The pod's `resources.requests` for CPU and memory."""
        return {"cpu": f"{self.cpu_millis}m", "memory": f"{self.memory_mib}Mi"}

    def limits(self) -> dict[str, str]:
        """The pod's memory limit (no CPU limit: model pods may burst)."""
        return {"memory": f"{math.ceil(self.memory_mib * MEMORY_LIMIT_FACTOR)}Mi"}


def pod_requests(
    option: ModelOption, default_memory_gib: float = DEFAULT_MEMORY_GIB
) -> PodRequests:
    """The requests of the model pod of one catalog option (see the module docstring)."""
    memory_gib = option.cpu_memory_gb if option.cpu_memory_gb else default_memory_gib
    cpu = CPU_MILLIS_BY_FRAMEWORK.get(Framework(option.framework), DEFAULT_CPU_MILLIS)
    return PodRequests(cpu, max(1, round(memory_gib * 1024)))


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """What is left on one node for the pods the planner places.

    `gpu_slots`: how many more pods may request `nvidia.com/gpu` here (with
    time-slicing, each physical GPU counts `replicas` times); `UNLIMITED`
    where the node does not advertise the resource (MIG slices, overrides).
    `tolerated`: model pods tolerate every NoSchedule/NoExecute taint here.
    `has_gpu`: the node offers GPUs (CPU pods prefer nodes without).
    `images`: None where the node pulls what it needs; on a node tainted
    `fovea.dev/preloaded-images`, the images it holds (`normalize_image` form):
    a pod goes there only if every image it runs is among them.
    """

    name: str
    cpu_millis: int
    memory_mib: int
    pods: int
    gpu_slots: int = UNLIMITED
    tolerated: bool = True
    has_gpu: bool = False
    images: frozenset[str] | None = None


def node_capacities(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]] = ()
) -> list[NodeCapacity]:
    """Every Ready, schedulable node's capacity left for model pods, sorted by name.

    `pods`: the pods bound to nodes (`spec.nodeName`) that the planner does
    not place: their requests are taken off. Pods that finished
    (Succeeded, Failed) hold nothing, as for the scheduler.
    """
    used: dict[str, list[int]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in _TERMINAL_PHASES:
            continue
        cpu, memory, gpus = requests_of(pod)
        total = used.setdefault(node, [0, 0, 0, 0])
        total[0] += cpu
        total[1] += memory
        total[2] += 1
        total[3] += gpus
    out = []
    for node in nodes:
        if not node_usable(node):
            continue
        name = str((node.get("metadata") or {}).get("name", ""))
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        # What a node does not advertise is not counted (real kubelets advertise all four).
        cpu = _or_unlimited(allocatable.get("cpu"), _millis)
        memory = _or_unlimited(
            allocatable.get("memory"), lambda v: math.floor(_number(v) / (1024 * 1024))
        )
        pod_count = _or_unlimited(allocatable.get("pods"), _count)
        gpu_raw = allocatable.get(c.RESOURCE_GPU)
        gpu_slots = _or_unlimited(gpu_raw, _count)
        u = used.get(name, [0, 0, 0, 0])
        taints = (node.get("spec") or {}).get("taints") or []
        out.append(
            NodeCapacity(
                name=name,
                cpu_millis=cpu - u[0],
                memory_mib=memory - u[1],
                pods=pod_count - u[2],
                gpu_slots=gpu_slots - u[3],
                tolerated=taints_tolerated(taints),
                has_gpu=gpu_slots > 0 and gpu_raw is not None,
                images=node_images(node) if _preloaded_only(taints) else None,
            )
        )
    return sorted(out, key=lambda n: n.name)


def taints_tolerated(taints: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a model pod (tolerations `MODEL_POD_TOLERATIONS`) may be scheduled here."""
    for taint in taints:
        if taint.get("effect") not in _BLOCKING_EFFECTS:
            continue
        if not any(
            t["key"] == taint.get("key") and t["effect"] == taint.get("effect")
            for t in MODEL_POD_TOLERATIONS
        ):
            return False
    return True


def node_images(node: Mapping[str, Any]) -> frozenset[str]:
    """The images a node reports holding (`status.images[].names`), normalized."""
    return frozenset(
        normalize_image(str(name))
        for image in (node.get("status") or {}).get("images") or []
        for name in image.get("names") or []
    )


def _preloaded_only(taints: Iterable[Mapping[str, Any]]) -> bool:
    return any(t.get("key") == c.TAINT_PRELOADED_IMAGES for t in taints)


def requests_of(pod: Mapping[str, Any]) -> tuple[int, int, int]:
    """A pod's effective requests as the scheduler counts them: (CPU m, memory MiB, GPUs).

    The sum over containers, or the largest init container's if larger, plus
    the pod's overhead.
    """
    spec = pod.get("spec") or {}
    total = [0, 0, 0]
    for container in spec.get("containers") or []:
        for k, v in enumerate(_container_requests(container)):
            total[k] += v
    for container in spec.get("initContainers") or []:
        for k, v in enumerate(_container_requests(container)):
            total[k] = max(total[k], v)
    overhead = spec.get("overhead") or {}
    total[0] += _millis(overhead.get("cpu"))
    total[1] += _mib(overhead.get("memory"))
    return total[0], total[1], total[2]


def _container_requests(container: Mapping[str, Any]) -> tuple[int, int, int]:
    resources = container.get("resources") or {}
    # A limit without a request defaults the request to the limit (API server defaulting).
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return (
        _millis(merged.get("cpu")),
        _mib(merged.get("memory")),
        _count(merged.get(c.RESOURCE_GPU)),
    )


def _or_unlimited(value: object, parse: Callable[[object], int]) -> int:
    return UNLIMITED if value is None else parse(value)


def _number(value: object) -> float:
    if value is None:
        return 0.0
    try:
        return float(parse_quantity(value))
    except ValueError:
        return 0.0


def _millis(value: object) -> int:
    return math.ceil(_number(value) * 1000 - 1e-9)


def _mib(value: object) -> int:
    return math.ceil(_number(value) / (1024 * 1024) - 1e-9)


def _count(value: object) -> int:
    return int(_number(value))


# --- the scheduler's refusals -------------------------------------------------------

# On a model pod: nodes where the scheduler refused an earlier pod of the same
# selection (comma-separated), so that the planner keeps avoiding them.
ANNOTATION_AVOID_NODES = f"{c.GROUP}/avoid-nodes"


@dataclass(frozen=True, slots=True)
class Refusals:
    """Where the scheduler refused a selection's pods, and what it said last."""

    nodes: frozenset[str] = frozenset()
    message: str | None = None  # the scheduler's message about a pod that exists now
    pod: str | None = None  # that pod


def unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when it cannot place the pod (PodScheduled False, Unschedulable).

    Not while the pod only waits for a claim it shares to finish its allocation (DRA):
    the scheduler tries it again as soon as the claim is allocated.
    """
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            message = str(cond.get("message") or "Unschedulable")
            return None if dra.waits_for_allocation(message) else message
    return None


def refusals(pods: Iterable[Mapping[str, Any]]) -> Refusals:
    """The refusals of one selection's model pods: what they carry, and what is pending now.

    A pod the scheduler refuses adds its planned node (the operator pins every
    model pod to one); a pod that carries `fovea.dev/avoid-nodes` adds those.
    """
    nodes: set[str] = set()
    message = pod_name = None
    for pod in pods:
        meta = pod.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        carried = annotations.get(ANNOTATION_AVOID_NODES) or ""
        nodes.update(n for n in carried.split(",") if n)
        said = unschedulable(pod)
        planned = annotations.get(c.ANNOTATION_PLANNED_NODE)
        if said is not None and not meta.get("deletionTimestamp"):
            if planned:
                nodes.add(planned)
            message, pod_name = said, meta.get("name")
    return Refusals(frozenset(nodes), message, pod_name)


def avoid_annotation(nodes: Iterable[str]) -> dict[str, str]:
    """The annotation that carries refused nodes to a selection's next pod (none if empty)."""
    names = sorted(set(nodes))
    return {ANNOTATION_AVOID_NODES: ",".join(names)} if names else {}
