"""`fovea-models cluster status`'s node rows: physical GPUs, sizes with units (issue 28)."""

from __future__ import annotations

from typing import Any

from fovea.domain import constants as c
from fovea.localcluster.cli import node_row
from fovea.localcluster.nodes import (
    TIME_SLICING_REPLICAS,
    node_labels,
    node_resources,
    parse_gpus,
    plan_nodes,
)


def _node(spec: str) -> dict[str, Any]:
    plan = plan_nodes(parse_gpus(spec), cpu=8, memory_bytes=32 * 2**30)[0]
    return {
        "metadata": {"name": plan.name, "labels": node_labels(plan)},
        "status": {
            "capacity": node_resources(plan),
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_gpus_are_the_physical_gpus_not_the_time_slice_replicas() -> None:
    node = _node("2x24GB")
    assert node["status"]["capacity"][c.RESOURCE_GPU] == str(2 * TIME_SLICING_REPLICAS)
    _, status, gpus, memory, product = node_row(node)
    assert (status, gpus, memory) == ("Ready", "2", "24.0 GB")
    assert product.endswith("(simulated)")


def test_without_the_count_label_the_replicas_are_divided_out() -> None:
    node = _node("2x24GB")
    del node["metadata"]["labels"][c.NODE_LABEL_GPU_COUNT]
    assert node_row(node)[2] == "2"
