"""Typed request and response bodies: what `/docs` and `/openapi.json` promise.

Field names are the contract's (snake_case). The precomputed JSON bytes the
routes return are built by `responses.py` and checked against these models
in the unit tests, so the OpenAPI stays true.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fovea.domain.budget import BudgetReport, PlacementView
from fovea.domain.conditions import WeightsPhase


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, for a person to read")


class OptionBody(BaseModel):
    """One model option, with the catalog's original snake_case fields as written."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str = Field(description="Hugging Face model id or local name")
    framework: str | None = Field(
        default=None, description="sglang, vllm, transformers, pytorch, ultralytics, external_api"
    )
    vram_gb: float | None = Field(default=None, description="VRAM need in GiB (if given in GB)")
    vram_mb: float | None = Field(default=None, description="VRAM need in MiB (if given in MB)")
    speed: str | None = Field(default=None, description="fast, medium or slow")
    description: str | None = None
    fps: float | None = Field(default=None, description="Frames per second (VLMs)")
    quantization: str | None = None
    provider: str | None = None
    api_endpoint: str | None = None
    requires_api_key: bool | None = None


class TaskBody(BaseModel):
    selected: str | None = Field(description="The selected option's name, or null")
    options: dict[str, OptionBody]


class InferenceBody(BaseModel):
    max_memory_per_model: float | Literal["auto"]
    offload_threshold: float
    warmup_on_startup: bool
    default_batch_size: int
    max_batch_size: int


class ConfigBody(BaseModel):
    models: dict[str, TaskBody] = Field(description="Models grouped by task type")
    inference: InferenceBody
    cuda_available: bool = Field(
        description="Whether a real GPU exists; simulated GPUs (models on the CPU) do not count"
    )
    total_vram_gb: float = Field(description="GPU memory of all nodes together (simulated too)")
    simulated_gpu: bool = Field(
        description="True when the GPUs are simulated (the local cluster): models run on the CPU"
    )
    simulated_vram_gb: float = Field(description="The part of total_vram_gb that is simulated")


class LoadedModelBody(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    memory_usage_gb: float | None = Field(
        description="Memory the model pod measured, GiB; null when it has not measured it"
    )
    load_time: float | None = Field(
        description="Load time in seconds; null when the pod has not reported it"
    )
    device: str = Field(description="cuda:N or cpu, as the model pod reports it")
    node: str | None = None
    pod: str | None = None
    simulated_gpu: bool = Field(description="Runs on the CPU of a simulated GPU node")
    random_weights: bool = Field(description="Built from its architecture with random weights")
    measured: bool = Field(description="Whether memory_usage_gb is a measurement (else null)")
    degraded: str | None = Field(
        default=None,
        description="On the CPU for want of GPU memory: why, and the GPU it wants "
        "(its Degraded condition); null otherwise",
    )
    allocated_device: AllocatedDeviceBody | None = Field(
        default=None,
        description="dra sharing mode: the GPU allocated to the pod's ResourceClaim, read from "
        "the claim (uuid, index, driver, pool, device, claim); null otherwise",
    )
    endpoint: EndpointBody | None = Field(
        default=None,
        description="Where the task's requests go (docs/inference.md); null for an external API "
        "or before the operator has named it",
    )


class EndpointBody(BaseModel):
    route: str = Field(description="The API's inference route: POST it the model's input")
    service: str = Field(description="The selection's Service, in the API's namespace")
    url: str = Field(description="In-cluster address: POST {url}/predict")
    serving_model: str | None = Field(description="The model the Service selects now")


class AllocatedDeviceBody(BaseModel):
    uuid: str | None
    index: int | None
    driver: str
    pool: str
    device: str
    claim: str


class HolderBody(BaseModel):
    selection: str = Field(description="namespace/name of the ModelSelection")
    task: str
    model: str | None
    phase: str
    memory_gb: float | None = Field(description="Measured by its pod; null if not yet")
    declared_memory_gb: float | None = Field(description="The catalog's figure")


class GpuHoldingBody(BaseModel):
    node: str
    index: int
    memory_gb: float
    simulated: bool
    held_by: list[HolderBody] = Field(description="Selections the operator placed on this GPU")


class QuotaBody(BaseModel):
    """A namespace's GPU-memory quota and what the operator placed (docs/tenants.md)."""

    namespace: str
    gpu_memory_quota_gb: float | None = Field(description="The quota, GiB; null: no memory cap")
    max_priority: int | None = Field(description="Priorities above are clamped; null: none")
    used_gb: float = Field(description="Declared memory of its selections placed on GPUs, GiB")
    available_gb: float | None = Field(description="Quota left, GiB; null: no memory cap")
    quota_exceeded: list[str] = Field(description="Tasks refused for the quota (QuotaExceeded)")
    problem: str | None = Field(description="An annotation that did not parse; null: none")


class WeightsBody(BaseModel):
    """status.weights of a selection: its weights' fetch into the cache (docs/weights.md)."""

    phase: WeightsPhase
    source: str | None = Field(description="The option's weights URI")
    revision: str | None = None
    sha256: str | None = Field(description="What was verified (or computed)")
    bytes_done: int
    bytes_total: int | None = Field(description="null: not known")
    bytes_per_second: float | None = None
    fetched_bytes: int = Field(description="Bytes this fetch downloaded; 0 when already cached")
    message: str | None = Field(description="The reason when Failed")
    updated_at: str | None = None


class LoadingBody(BaseModel):
    """A model on its way to Ready: fetching its weights, then loading them."""

    model_config = ConfigDict(protected_namespaces=())

    task: str
    model: str | None
    model_id: str | None
    phase: Literal["fetching", "loading"]
    bytes_done: int | None = Field(description="fetching: bytes in the cache so far")
    bytes_total: int | None = Field(description="fetching: bytes in all; null: not known")
    bytes_per_second: float | None = Field(description="fetching: the current rate")
    weights: WeightsBody | None = Field(description="null: the option has no weights URI")
    message: str | None
    pod: str | None
    node: str | None
    since: str | None = Field(description="RFC 3339 time its Ready condition last changed")


class StatusBody(BaseModel):
    loaded_models: dict[str, LoadedModelBody] = Field(description="Loaded models by task")
    total_vram_allocated_gb: float = Field(description="Measured memory of models on GPUs, GiB")
    total_vram_available_gb: float = Field(description="GPU memory of all nodes, GiB")
    cuda_available: bool = Field(description="Whether a real GPU exists (simulated ones: no)")
    device: str = Field(description="Device of the first model on a real GPU, else cpu")
    simulated_gpu: bool = Field(description="True when the GPUs are simulated")
    vram_scope: Literal["cluster", "namespace"] = Field(
        description="cluster: held_by covers every namespace; namespace: only this one"
    )
    gpus: list[GpuHoldingBody] = Field(description="The GPUs the totals cover")
    quota: QuotaBody | None = Field(
        default=None, description="This namespace's GPU-memory quota; null: none"
    )
    loading: dict[str, LoadingBody] = Field(
        default_factory=dict,
        description="Models not yet Ready, by task: fetching weights (bytes, rate) or loading",
    )


class SelectBody(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: Literal["success"]
    task_type: str
    selected_model: str
    model_id: str
    message: str


class LoadBody(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: Literal["success"]
    task_type: str
    model_name: str
    model_id: str
    message: str


class ReadyBody(BaseModel):
    status: Literal["ready"]


class HealthBody(BaseModel):
    status: Literal["ok"]


class PlacementBody(PlacementView):
    decided_by: Literal["operator", "prediction"] = Field(
        description="operator: its current status; prediction: the planner, not yet decided"
    )


class ValidateBody(BudgetReport):
    """The budget report (contract fields first, then extras), with the operator's decisions."""

    placements: dict[str, PlacementBody]  # type: ignore[assignment]
    scope: Literal["cluster", "namespace"] = Field(
        description="Whether other namespaces' selections were visible"
    )
    quota: QuotaBody | None = Field(
        default=None, description="This namespace's GPU-memory quota; null: none"
    )
