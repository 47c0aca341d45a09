"""Plain-data builders of resources for the API's unit tests (no cluster involved)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fovea.api.state import ClusterState, Selection, build_state, parse_selection
from fovea.domain import constants as c
from fovea.domain.endpoints import label_value

# The contract's /config example, as a ModelCatalog spec (camelCase on the wire).
CONTRACT_CATALOG: dict[str, Any] = {
    "tasks": {
        "video_summarization": {
            "options": {
                "llama-4-scout": {
                    "modelId": "meta-llama/Llama-4-Scout",
                    "framework": "sglang",
                    "vramGb": 8.0,
                    "speed": "fast",
                    "description": "Fast VLM for video understanding",
                    "fps": 2.5,
                },
                "llama-4-maverick": {
                    "modelId": "meta-llama/Llama-4-Maverick",
                    "framework": "vllm",
                    "vramGb": 16.0,
                    "speed": "medium",
                    "description": "High-quality VLM",
                    "fps": 1.2,
                },
            }
        },
        "object_detection": {
            "options": {
                "yolov8n": {
                    "modelId": "yolov8n",
                    "vramMb": 512,
                    "speed": "fast",
                    "description": "Nano YOLO model",
                },
                "groundingdino": {
                    "modelId": "IDEA-Research/grounding-dino-base",
                    "vramMb": 2048,
                    "speed": "medium",
                    "description": "Zero-shot detection",
                },
            }
        },
        "object_tracking": {
            "options": {
                "samurai": {
                    "modelId": "yangchris11/samurai",
                    "vramMb": 4096,
                    "speed": "slow",
                    "description": "Segment anything with tracking",
                },
                "bytetrack": {
                    "modelId": "bytetrack",
                    "vramMb": 256,
                    "speed": "fast",
                    "description": "Lightweight tracking",
                },
            }
        },
    },
    "inference": {
        "maxMemoryPerModel": 24,  # the CRD: a whole number, or a decimal as a string
        "offloadThreshold": 0.8,
        "warmupOnStartup": True,
        "defaultBatchSize": 1,
        "maxBatchSize": 8,
    },
}


REPLICAS = 8  # time-slicing replicas per GPU of the test nodes


def gpu_node(
    name: str, count: int = 1, memory_mib: int = 24576, simulated: bool = False
) -> dict[str, Any]:
    labels = {
        c.NODE_LABEL_GPU_MEMORY_MIB: str(memory_mib),
        c.NODE_LABEL_GPU_COUNT: str(count),
        c.NODE_LABEL_GPU_PRODUCT: "NVIDIA-L4",
        c.NODE_LABEL_GPU_REPLICAS: str(REPLICAS),
    }
    if simulated:
        labels[c.NODE_LABEL_SIMULATED] = "true"
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {
            # Time-sliced, as a real node with the device plugin: each GPU many times.
            "allocatable": {c.RESOURCE_GPU: str(count * REPLICAS), "cpu": "8", "memory": "64Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def cpu_node(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {}},
        "status": {
            "allocatable": {"cpu": "8", "memory": "64Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def selection(
    task: str,
    model: str | None,
    generation: int = 1,
    status: dict[str, Any] | None = None,
    name: str | None = None,
    **spec: Any,
) -> Selection:
    raw = {
        "metadata": {
            "name": name or task.replace("_", "-"),
            "uid": f"uid-{name or task.replace('_', '-')}",
            "resourceVersion": str(100 + generation),
            "generation": generation,
        },
        "spec": {"task": task, "model": model, **spec},
        "status": status or {},
    }
    parsed = parse_selection(raw)
    assert parsed is not None
    return parsed


def runtime_ready(
    pod: str, model_id: str, memory_gb: float, device: str = "cuda:0", **extra: Any
) -> dict[str, Any]:
    return {
        "state": "Ready",
        "pod": pod,
        "modelId": model_id,
        "device": device,
        "measuredMemoryGb": memory_gb,
        "loadTimeSeconds": 1.5,
        **extra,
    }


def model_pod(name: str, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {c.LABEL_COMPONENT: c.COMPONENT_MODEL_POD},
    }
    if terminating:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta}


def held_pod(
    sel: Selection, node: str, gpu: int | None = 0, namespace: str = "default"
) -> dict[str, Any]:
    """The operator's model pod of `sel`, planned on `node` (and GPU `gpu`), as it labels it."""
    annotations = {c.ANNOTATION_PLANNED_NODE: node}
    if gpu is not None:
        annotations[c.ANNOTATION_PLANNED_GPU] = str(gpu)
    return {
        "metadata": {
            "name": f"{sel.name}-{sel.spec.model}",
            "namespace": namespace,
            "labels": {
                c.LABEL_COMPONENT: c.COMPONENT_MODEL_POD,
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_MODEL: label_value(sel.spec.model or ""),
            },
            "annotations": annotations,
            "ownerReferences": [
                {"kind": c.SELECTION_KIND, "controller": True, "uid": sel.uid, "name": sel.name}
            ],
        },
        "spec": {"nodeName": node},
        "status": {"phase": "Running"},
    }


def state(
    selections: Sequence[Selection] = (),
    nodes: Sequence[dict[str, Any]] | None = None,
    pods: Sequence[dict[str, Any]] = (),
    catalog: dict[str, Any] | None = CONTRACT_CATALOG,
) -> ClusterState:
    catalogs = (
        {} if catalog is None else {"default": {"metadata": {"name": "default"}, "spec": catalog}}
    )
    node_list = nodes if nodes is not None else [gpu_node("gpu-0")]
    return build_state(
        "default",
        "default",
        catalogs,
        {s.name: s for s in selections},
        {n["metadata"]["name"]: n for n in node_list},
        {p["metadata"]["name"]: p for p in pods},
    )


def examples_catalog() -> dict[str, Any]:
    """The contract's catalog plus the YOLOv8 sizes its usage examples select."""
    catalog: dict[str, Any] = {
        "tasks": {t: {"options": dict(v["options"])} for t, v in CONTRACT_CATALOG["tasks"].items()},
        "inference": dict(CONTRACT_CATALOG["inference"]),
    }
    detection = catalog["tasks"]["object_detection"]["options"]
    for size, mb, speed in (("s", 1536, "fast"), ("m", 2560, "medium"), ("l", 4096, "slow")):
        detection[f"yolov8{size}"] = {
            "modelId": f"yolov8{size}",
            "vramMb": mb,
            "speed": speed,
            "description": f"YOLOv8 {size.upper()}",
        }
    return catalog
