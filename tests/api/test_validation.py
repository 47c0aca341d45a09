"""/validate from the operator's decisions, then the prediction (pure, no cluster)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from api_builders import gpu_node, held_pod, selection, state
from fovea.api.cache import Snapshot
from fovea.api.errors import CatalogUnreadable
from fovea.api.schemas import ValidateBody
from fovea.api.service import ModelService
from fovea.api.state import ClusterState, Selection, parse_selection
from fovea.api.validation import validate_body
from fovea.domain.resources import CatalogSpec

EVICTED_BY = (
    "evicted from gpu-0 GPU 0 to make room for team-a/summary (priority 900 over 100); "
    "no other GPU has room for 16.0 GB; its option has no cpu_memory_gb, so it cannot run "
    "on the CPU"
)

NOW = 1_800_000_000.0  # the clock of /validate and the what-if route (leases, keepAlive)


def validate(st: ClusterState) -> dict[str, Any]:
    body = validate_body(st, NOW)
    ValidateBody.model_validate(body)
    return body


def peer(namespace: str, name: str, gib: float, **status: Any) -> Selection:
    parsed = parse_selection(
        {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": "7",
                "uid": f"uid-{namespace}-{name}",
            },
            "spec": {"task": "summary", "model": "big", "priority": 900},
            "status": {"declaredMemoryGb": gib, **status},
        }
    )
    assert parsed is not None
    return parsed


def with_peers(st: ClusterState, *peers: tuple[str, Selection]) -> ClusterState:
    """`st` with other namespaces' selections, each with its catalog and the pod it holds."""
    catalogs = dict(st.catalogs)
    pods = list(st.model_pods)
    for _, sel in peers:
        option = {"modelId": "big", "vramGb": sel.status.declared_memory_gb}
        spec = {"tasks": {sel.spec.task: {"options": {sel.spec.model: option}}}}
        catalogs[(sel.namespace, sel.spec.catalog)] = CatalogSpec.model_validate(spec)
        if sel.status.node is not None:
            pods.append(held_pod(sel, sel.status.node, sel.status.gpu_index, sel.namespace))
    return dataclasses.replace(
        st, peers=dict(peers), cluster_wide=True, catalogs=catalogs, model_pods=tuple(pods)
    )


def test_the_operators_eviction_makes_it_invalid_and_names_gpu_and_holder() -> None:
    status = {
        "phase": "Evicted",
        "message": EVICTED_BY,
        "model": "llama-4-maverick",
        "observedGeneration": 1,
    }
    own = selection("video_summarization", "llama-4-maverick", status=status)
    holder = peer("team-a", "summary", 16.0, phase="Ready", node="gpu-0", gpuIndex=0)
    body = validate(with_peers(state([own]), ("team-a/summary", holder)))
    assert body["valid"] is False
    assert body["placements"]["video_summarization"]["decided_by"] == "operator"
    assert body["placements"]["video_summarization"]["outcome"] == "evicted"
    warning = next(w for w in body["warnings"] if w.startswith("video_summarization:"))
    assert "llama-4-maverick (16.0 GB) is evicted (the operator's decision)" in warning
    assert "gpu-0 GPU 0 (24.0 GB) holds team-a/summary (16.0 GB)" in warning
    assert "Consider selecting smaller models or reducing simultaneous tasks" in body["warnings"]


def test_a_model_the_operator_placed_is_valid_whatever_the_prediction() -> None:
    status = {
        "phase": "Ready",
        "message": "placed",
        "model": "llama-4-maverick",
        "node": "gpu-0",
        "gpuIndex": 0,
        "observedGeneration": 1,
    }
    body = validate(state([selection("video_summarization", "llama-4-maverick", status=status)]))
    assert body["valid"] is True
    assert body["placements"]["video_summarization"]["decided_by"] == "operator"
    assert body["warnings"] == []


def test_an_outdated_status_is_not_the_operators_decision() -> None:
    status = {"phase": "Evicted", "message": "old", "model": "llama-4-scout"}
    sel = selection("video_summarization", "llama-4-maverick", generation=2, status=status)
    body = validate(state([sel]))
    assert body["placements"]["video_summarization"]["decided_by"] == "prediction"
    assert body["valid"] is True


def test_a_prediction_onto_a_gpu_full_of_other_namespaces_models_is_invalid() -> None:
    holder = peer("team-a", "summary", 18.0, phase="Ready", node="gpu-0", gpuIndex=0)
    st = with_peers(state([selection("object_detection", "groundingdino")]), ("team-a/s", holder))
    body = validate(st)
    assert body["valid"] is False
    warning = next(w for w in body["warnings"] if w.startswith("object_detection:"))
    assert "groundingdino (2.0 GB) cannot be placed on a GPU" in warning
    assert "gpu-0 GPU 0 (24.0 GB) holds team-a/s (18.0 GB)" in warning
    assert body["gpus"][0]["used_gb"] == 18.0
    assert body["total_vram_gb"] == 24.0  # the contract's totals: the GPUs as they are


def test_the_prediction_uses_the_gpu_other_namespaces_leave_free() -> None:
    holder = peer("team-a", "summary", 18.0, phase="Ready", node="gpu-0", gpuIndex=0)
    own = selection("object_detection", "groundingdino")
    st = with_peers(
        state([own], nodes=[gpu_node("gpu-0"), gpu_node("gpu-1")]), ("team-a/s", holder)
    )
    body = validate(st)
    assert body["valid"] is True
    assert body["placements"]["object_detection"]["node"] == "gpu-1"


def test_namespaced_mode_says_its_scope() -> None:
    body = validate(state([selection("object_detection", "yolov8n")], nodes=[gpu_node("gpu-0")]))
    assert body["scope"] == "namespace"
    assert body["valid"] is True


class _Holder:
    """What the service reads of a cache: its current snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot


def test_a_catalog_that_does_not_parse_is_an_error_not_default_values() -> None:
    broken = {"tasks": {}, "inference": {"defaultBatchSize": 9, "maxBatchSize": 8}}
    st = state(catalog=broken)
    assert st.catalog is None
    assert st.catalog_error is not None
    assert st.catalog_error.startswith("ModelCatalog 'default' does not parse: inference: ")
    assert "default_batch_size (9) exceeds max_batch_size (8)" in st.catalog_error
    service = ModelService(_Holder(Snapshot(1, st, {}, [])), None, None, 60)  # type: ignore[arg-type]
    for read in (service.config_json, service.validate_json):
        with pytest.raises(CatalogUnreadable) as err:
            read()
        assert err.value.status_code == 500
        assert err.value.message == st.catalog_error
