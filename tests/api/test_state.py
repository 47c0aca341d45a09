"""Which changes of Nodes and pods matter to the responses (the rest rebuild nothing)."""

from __future__ import annotations

import copy

from api_builders import gpu_node, model_pod
from fovea.api.state import node_view, pod_view
from fovea.domain import constants as c


def test_a_node_heartbeat_changes_nothing_that_matters() -> None:
    node = gpu_node("gpu-0")
    beat = copy.deepcopy(node)
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:10Z"
    beat["metadata"]["resourceVersion"] = "999"
    assert node_view(beat) == node_view(node)


def test_gpu_labels_capacity_readiness_and_cordons_matter() -> None:
    node = gpu_node("gpu-0")
    relabelled = copy.deepcopy(node)
    relabelled["metadata"]["labels"][c.NODE_LABEL_GPU_MEMORY_MIB] = "81920"
    not_ready = copy.deepcopy(node)
    not_ready["status"]["conditions"][0]["status"] = "False"
    cordoned = copy.deepcopy(node)
    cordoned["spec"] = {"unschedulable": True}
    shrunk = copy.deepcopy(node)
    shrunk["status"]["allocatable"][c.RESOURCE_GPU] = "0"
    for changed in (relabelled, not_ready, cordoned, shrunk):
        assert node_view(changed) != node_view(node)


def test_only_a_pods_deletion_matters() -> None:
    pod = model_pod("p")
    ready = copy.deepcopy(pod)
    ready["status"] = {"phase": "Running"}
    assert pod_view(ready) == pod_view(pod)
    assert pod_view(model_pod("p", terminating=True)) != pod_view(pod)
