"""Shared builders of the operator's inputs: nodes, pods, catalogs, selections, worlds.

Plain data as the API server returns it (camelCase dicts), so a test reads like
the cluster it describes. `apply` plays the executor: it carries decided
actions out on a World (pods created and deleted, statuses merged), which is
what the fixed-point tests need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fovea.domain import constants as c
from fovea.domain.resources import SelectionSpec
from fovea.operator.reconcile import Actions, Catalog, Selection, World

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NS = "ns"


def gpu_node(name: str, gib: int, count: int = 1) -> dict[str, Any]:
    """A Ready node with `count` GPUs of `gib` GiB, as GPU feature discovery labels it."""
    return {
        "metadata": {
            "name": name,
            "labels": {
                c.NODE_LABEL_GPU_MEMORY_MIB: str(gib * 1024),
                c.NODE_LABEL_GPU_COUNT: str(count),
            },
        },
        "spec": {},
        "status": {
            "allocatable": {
                c.RESOURCE_GPU: str(count),
                "cpu": "8",
                "memory": "64Gi",
                "pods": "110",
            },
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def cpu_node(name: str = "cpu-0") -> dict[str, Any]:
    """A Ready node without GPUs."""
    return {
        "metadata": {"name": name, "labels": {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "8", "memory": "64Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def option(vram_gb: float | None = None, **extra: Any) -> dict[str, Any]:
    """A catalog option (camelCase), a local pytorch model unless `extra` says otherwise."""
    body: dict[str, Any] = {"modelId": extra.pop("modelId", "m"), "framework": "pytorch"}
    if vram_gb is not None:
        body["vramGb"] = vram_gb
    return {**body, **extra}


def catalog_spec(
    tasks: Mapping[str, Mapping[str, Mapping[str, Any]]], inference: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"tasks": {t: {"options": dict(o)} for t, o in tasks.items()}}
    if inference is not None:
        spec["inference"] = dict(inference)
    return spec


def catalog(spec: Mapping[str, Any], name: str = "default", generation: int = 1) -> Catalog:
    return Catalog(NS, name, spec, uid=f"uid-catalog-{name}", generation=generation)


def selection(
    task: str,
    model: str | None,
    status: Mapping[str, Any] | None = None,
    generation: int = 1,
    **spec: Any,
) -> Selection:
    """The task's ModelSelection (spec keys in snake_case)."""
    name = task.replace("_", "-")
    return Selection(
        namespace=NS,
        name=name,
        uid=f"uid-{name}",
        generation=generation,
        spec=SelectionSpec(task=task, model=model, **spec),
        status=dict(status or {}),
    )


def world(
    *selections: Selection,
    catalogs: list[Catalog],
    nodes: list[dict[str, Any]] | None = None,
    pods: list[dict[str, Any]] | None = None,
) -> World:
    return World(
        catalogs={cat.key: cat for cat in catalogs},
        selections=list(selections),
        nodes=nodes if nodes is not None else [gpu_node("gpu-0", 24), cpu_node()],
        pods=pods or [],
        now=NOW,
    )


def running(pod: Mapping[str, Any], ready: bool = True) -> dict[str, Any]:
    """The pod once bound to its planned node (and Ready, unless `ready` is False)."""
    node = pod["metadata"]["annotations"].get(c.ANNOTATION_PLANNED_NODE) or "cpu-0"
    return {
        **pod,
        "spec": {**pod["spec"], "nodeName": node},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def apply(w: World, actions: Actions) -> World:
    """The World after an executor carried `actions` out (deletions are immediate)."""
    gone = set(actions.delete)
    pods = [p for p in w.pods if (p["metadata"]["namespace"], p["metadata"]["name"]) not in gone]
    pods += [dict(p) for p in actions.create]
    selections = []
    for sel in w.selections:
        patch = actions.status.get(sel.key)
        status = merge(sel.status, patch) if patch is not None else sel.status
        selections.append(replace(sel, status=status))
    catalogs = {}
    for key, cat in w.catalogs.items():
        patch = actions.catalog_status.get(key)
        catalogs[key] = replace(cat, status=merge(cat.status, patch)) if patch else cat
    services = {(sv["metadata"]["namespace"], sv["metadata"]["name"]): sv for sv in w.services}
    services.update(
        {(sv["metadata"]["namespace"], sv["metadata"]["name"]): sv for sv in actions.services}
    )
    return replace(
        w, selections=selections, pods=pods, catalogs=catalogs, services=list(services.values())
    )


def merge(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386), as the API server applies it."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
