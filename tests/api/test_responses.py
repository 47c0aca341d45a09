"""The pure response builders against the contract's examples (no cluster)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from api_builders import (
    CONTRACT_CATALOG,
    cpu_node,
    gpu_node,
    model_pod,
    runtime_ready,
    selection,
    state,
)
from fovea.api import responses
from fovea.api.schemas import ConfigBody, StatusBody
from fovea.api.state import ClusterState, parse_selection


def config_of(st: ClusterState) -> dict[str, Any]:
    return responses.config_body(st, responses.gpu_view(st))


def test_config_matches_the_contract_example_field_for_field() -> None:
    st = state(
        [
            selection("video_summarization", "llama-4-scout"),
            selection("object_detection", "yolov8n"),
        ]
    )
    body = config_of(st)
    ConfigBody.model_validate(body)  # what the OpenAPI promises
    vs = body["models"]["video_summarization"]
    assert vs["selected"] == "llama-4-scout"
    assert vs["options"]["llama-4-scout"] == {
        "model_id": "meta-llama/Llama-4-Scout",
        "framework": "sglang",
        "vram_gb": 8.0,
        "speed": "fast",
        "description": "Fast VLM for video understanding",
        "fps": 2.5,
    }
    # vram_mb stays vram_mb, and no field the catalog did not set appears.
    assert body["models"]["object_detection"]["options"]["yolov8n"] == {
        "model_id": "yolov8n",
        "vram_mb": 512,
        "speed": "fast",
        "description": "Nano YOLO model",
    }
    # As written (issue 28): a whole number comes back whole, not as 512.0.
    assert '"vram_mb":512,' in responses.to_json(body).decode()
    assert type(vs["options"]["llama-4-scout"]["fps"]) is float
    assert body["models"]["object_tracking"]["selected"] is None
    assert body["inference"] == {
        "max_memory_per_model": 24.0,
        "offload_threshold": 0.8,
        "warmup_on_startup": True,
        "default_batch_size": 1,
        "max_batch_size": 8,
    }
    assert body["cuda_available"] is True
    assert body["total_vram_gb"] == 24.0
    assert body["simulated_gpu"] is False


def test_config_tasks_come_from_the_catalog() -> None:
    catalog = {
        "tasks": {
            "speaker_diarization": {
                "options": {"pyannote": {"modelId": "pyannote/speaker-diarization", "vramGb": 0.1}}
            },
            "claim_extraction": {
                "options": {
                    "claude": {
                        "modelId": "claude-sonnet",
                        "framework": "external_api",
                        "provider": "anthropic",
                        "requiresApiKey": True,
                    }
                }
            },
        },
        "inference": {"maxMemoryPerModel": "auto"},
    }
    body = config_of(state(catalog=catalog))
    ConfigBody.model_validate(body)
    assert sorted(body["models"]) == ["claim_extraction", "speaker_diarization"]
    assert body["models"]["claim_extraction"]["options"]["claude"] == {
        "model_id": "claude-sonnet",
        "framework": "external_api",
        "provider": "anthropic",
        "requires_api_key": True,
    }
    assert body["inference"]["max_memory_per_model"] == "auto"


def test_config_without_a_catalog_has_no_tasks_and_default_inference() -> None:
    body = config_of(state(catalog=None))
    ConfigBody.model_validate(body)
    assert body["models"] == {}
    assert body["inference"]["offload_threshold"] == 0.8


def test_config_sums_gpu_memory_and_says_when_gpus_are_simulated() -> None:
    nodes = [
        gpu_node("a", count=2, memory_mib=24576, simulated=True),
        gpu_node("b", 1, 81920, True),
    ]
    body = config_of(state(nodes=nodes))
    assert body["total_vram_gb"] == 128.0
    assert body["simulated_vram_gb"] == 128.0
    assert body["cuda_available"] is False  # no real GPU: models run on the CPU
    assert body["simulated_gpu"] is True


def test_config_with_real_and_simulated_gpus_counts_the_real_one_as_cuda() -> None:
    nodes = [gpu_node("real", 1, 24576), gpu_node("sim", 1, 24576, True)]
    body = config_of(state(nodes=nodes))
    assert body["cuda_available"] is True
    assert body["total_vram_gb"] == 48.0
    assert body["simulated_vram_gb"] == 24.0


def test_config_on_a_cpu_only_cluster() -> None:
    body = config_of(state(nodes=[cpu_node("cpu-0")]))
    assert body["cuda_available"] is False
    assert body["total_vram_gb"] == 0.0


def status_of(st: ClusterState) -> dict[str, Any]:
    return responses.status_body(st, responses.gpu_view(st))


def test_status_lists_ready_models_keyed_by_task_with_measured_memory() -> None:
    sels = [
        selection(
            "video_summarization",
            "llama-4-scout",
            status={
                "phase": "Ready",
                "node": "gpu-0",
                "gpuIndex": 0,
                "pod": "vs-pod",
                "runtime": runtime_ready("vs-pod", "meta-llama/Llama-4-Scout", 7.8),
            },
        ),
        selection(
            "object_detection",
            "yolov8n",
            status={
                "phase": "Ready",
                "node": "gpu-0",
                "gpuIndex": 0,
                "pod": "od-pod",
                "runtime": runtime_ready("od-pod", "yolov8n", 0.5, loadTimeSeconds=0.8),
            },
        ),
        selection(
            "object_tracking",
            "samurai",
            status={"phase": "Loading", "runtime": {"state": "Loading", "pod": "ot-pod"}},
        ),
    ]
    pods = [model_pod("vs-pod"), model_pod("od-pod"), model_pod("ot-pod")]
    body = status_of(state(sels, pods=pods))
    StatusBody.model_validate(body)
    assert set(body["loaded_models"]) == {"video_summarization", "object_detection"}
    od = body["loaded_models"]["object_detection"]
    assert od["model_id"] == "yolov8n"
    assert od["memory_usage_gb"] == 0.5
    assert od["load_time"] == 0.8
    assert od["device"] == "cuda:0"
    assert od["node"] == "gpu-0"
    assert od["pod"] == "od-pod"
    assert body["total_vram_allocated_gb"] == 8.3
    assert body["total_vram_available_gb"] == 24.0
    assert body["cuda_available"] is True
    assert body["device"] == "cuda:0"


def test_status_ignores_a_ready_report_whose_pod_is_gone_or_terminating() -> None:
    sels = [
        selection(
            "object_detection",
            "yolov8n",
            status={"pod": "old", "runtime": runtime_ready("old", "yolov8n", 0.5)},
        ),
        selection(
            "object_tracking",
            "bytetrack",
            status={"pod": "dying", "runtime": runtime_ready("dying", "bytetrack", 0.2)},
        ),
    ]
    body = status_of(state(sels, pods=[model_pod("dying", terminating=True)]))
    assert body["loaded_models"] == {}
    assert body["total_vram_allocated_gb"] == 0.0
    assert body["device"] == "cpu"


def test_status_counts_only_gpu_models_as_allocated_vram() -> None:
    sels = [
        selection(
            "object_detection",
            "yolov8n",
            status={"pod": "p1", "runtime": runtime_ready("p1", "yolov8n", 0.7, device="cpu")},
        ),
    ]
    body = status_of(state(sels, pods=[model_pod("p1")]))
    assert body["loaded_models"]["object_detection"]["device"] == "cpu"
    assert body["total_vram_allocated_gb"] == 0.0
    assert body["device"] == "cpu"


def test_status_on_a_simulated_gpu_says_so() -> None:
    sels = [
        selection(
            "object_detection",
            "yolov8n",
            status={
                "node": "sim",
                "gpuIndex": 1,
                "device": "cuda:0",
                "pod": "p1",
                "runtime": runtime_ready("p1", "yolov8n", 0.4, device="cpu", simulatedGpu=True),
            },
        ),
    ]
    st = state(sels, nodes=[gpu_node("sim", count=2, simulated=True)], pods=[model_pod("p1")])
    body = status_of(st)
    model = body["loaded_models"]["object_detection"]
    assert model["simulated_gpu"] is True
    assert model["device"] == "cpu"  # where it really runs
    assert body["simulated_gpu"] is True
    assert body["cuda_available"] is False
    assert body["device"] == "cpu"  # where it really runs: no CUDA device exists
    assert body["total_vram_allocated_gb"] == 0.4  # the simulated GPU memory it holds
    assert body["gpus"][1]["simulated"] is True
    assert responses.vram_by_gpu(st, responses.loaded_models(st)) == {("sim", 1): 0.4}


def test_a_ready_model_without_a_measurement_says_so_with_nulls() -> None:
    report = {"state": "Ready", "pod": "p1", "modelId": "yolov8n", "device": "cuda:0"}
    sels = [selection("object_detection", "yolov8n", status={"pod": "p1", "runtime": report})]
    body = status_of(state(sels, pods=[model_pod("p1")]))
    StatusBody.model_validate(body)
    model = body["loaded_models"]["object_detection"]
    assert model["memory_usage_gb"] is None
    assert model["load_time"] is None
    assert model["measured"] is False
    assert body["total_vram_allocated_gb"] == 0.0


def test_status_lists_what_each_gpu_holds_across_namespaces() -> None:
    placed = {"phase": "Ready", "node": "gpu-0", "gpuIndex": 0, "declaredMemoryGb": 8.0}
    own = selection("video_summarization", "llama-4-scout", status=placed)
    peer = parse_selection(
        {
            "metadata": {"name": "big", "namespace": "team-b", "resourceVersion": "1"},
            "spec": {"task": "summarize", "model": "huge"},
            "status": {**placed, "declaredMemoryGb": 12.0, "phase": "Loading"},
        }
    )
    assert peer is not None
    st = dataclasses.replace(state([own]), peers={"team-b/big": peer}, cluster_wide=True)
    body = status_of(st)
    StatusBody.model_validate(body)
    assert body["vram_scope"] == "cluster"
    held = body["gpus"][0]["held_by"]
    assert [(h["selection"], h["declared_memory_gb"]) for h in held] == [
        ("default/video-summarization", 8.0),
        ("team-b/big", 12.0),
    ]


def test_bytes_are_compact_json() -> None:
    data = responses.to_json({"a": [1, 2], "b": "é"})
    assert data == '{"a":[1,2],"b":"é"}'.encode()
    assert json.loads(data) == {"a": [1, 2], "b": "é"}


def test_the_canonical_selection_wins_for_a_task() -> None:
    other = selection("object_detection", "groundingdino", name="aaa-detection")
    canonical = selection("object_detection", "yolov8n")
    body = config_of(state([other, canonical]))
    assert body["models"]["object_detection"]["selected"] == "yolov8n"
    assert CONTRACT_CATALOG["tasks"]["object_detection"]  # untouched


def test_status_names_the_gpu_allocated_to_the_pods_claim_in_dra_mode() -> None:
    device = {
        "uuid": "GPU-sim-gpu-0-1",
        "index": 1,
        "driver": "gpu.nvidia.com",
        "pool": "gpu-0",
        "device": "gpu-1",
        "claim": "gpu-gpu-0-1-abcd1234",
    }
    sels = [
        selection(
            "object_detection",
            "yolov8n",
            status={
                "phase": "Ready",
                "node": "gpu-0",
                "gpuIndex": 1,
                "pod": "od-pod",
                "allocatedDevice": device,
                "runtime": runtime_ready("od-pod", "yolov8n", 0.5),
            },
        ),
        selection(
            "object_tracking",
            "bytetrack",
            status={"pod": "ot-pod", "runtime": runtime_ready("ot-pod", "bytetrack", 0.2)},
        ),
    ]
    body = status_of(state(sels, pods=[model_pod("od-pod"), model_pod("ot-pod")]))
    StatusBody.model_validate(body)
    assert body["loaded_models"]["object_detection"]["allocated_device"] == device
    assert body["loaded_models"]["object_tracking"]["allocated_device"] is None
