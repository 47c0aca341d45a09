"""Typed schemas of the ModelCatalog and ModelSelection custom resources.

These pydantic models are the single source of the CRDs (see
`fovea.domain.crds`), of catalog import, and of what the operator, the API and
the model pod read and write. Field names are camelCase on the wire, as
Kubernetes conventions ask; Python code uses snake_case.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GIB: int = 1024**3
MIB: int = 1024**2

PRIORITY_MIN = 0
PRIORITY_MAX = 1000
DEFAULT_PRIORITY = 100

# A Kubernetes label value / option key: what a task or option name may be.
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"


class Wire(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=True
    )


class Framework(StrEnum):
    TRANSFORMERS = "transformers"
    PYTORCH = "pytorch"
    ULTRALYTICS = "ultralytics"
    SGLANG = "sglang"
    VLLM = "vllm"
    EXTERNAL_API = "external_api"


class Speed(StrEnum):
    FAST = "fast"
    MEDIUM = "medium"
    SLOW = "slow"


class SharingMode(StrEnum):
    """How model pods share a GPU."""

    WHOLE = "whole"  # one pod per GPU, nvidia.com/gpu: 1
    TIME_SLICED = "timeSliced"  # several pods per GPU; VRAM accounting is the guard
    HAMI = "hami"  # HAMi: nvidia.com/gpumem limits per pod
    MIG = "mig"  # MIG profiles: nvidia.com/mig-<profile>


class DevicePolicy(StrEnum):
    AUTO = "auto"  # GPU when it fits, else CPU when the option allows
    GPU = "gpu"
    CPU = "cpu"


class LoadPolicy(StrEnum):
    EAGER = "eager"
    ON_DEMAND = "onDemand"


class Phase(StrEnum):
    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    LOADING = "Loading"
    READY = "Ready"
    EVICTED = "Evicted"
    CPU_FALLBACK = "CPUFallback"
    UNSCHEDULABLE = "Unschedulable"
    FAILED = "Failed"
    UNSELECTED = "Unselected"


class ModelOption(Wire):
    """One model a task can use: an entry of `models.yaml`."""

    model_id: str = Field(min_length=1, description="Hugging Face model id or local name")
    framework: Framework = Framework.PYTORCH
    vram_gb: float | None = Field(default=None, ge=0, description="VRAM need in GiB")
    vram_mb: float | None = Field(default=None, ge=0, description="VRAM need in MiB")
    cpu_memory_gb: float | None = Field(
        default=None, ge=0, description="Memory on CPU; set it to allow CPU fallback"
    )
    speed: Speed | None = None
    description: str | None = None
    fps: float | None = Field(default=None, ge=0)
    image: str | None = Field(default=None, description="Model-server image for this option")
    quantization: str | None = None
    provider: str | None = None
    api_endpoint: str | None = None
    requires_api_key: bool | None = None
    api_key_secret: str | None = Field(
        default=None, description="Secret (key `api-key`) holding an external API's key"
    )
    architecture: str | None = Field(
        default=None, description="Architecture to build when weights are not on disk"
    )
    allow_random_weights: bool = Field(
        default=False,
        description="Build from the architecture config with random weights (demo, tests)",
    )
    mig_profile: str | None = Field(default=None, description="MIG profile, e.g. 1g.10gb")

    @model_validator(mode="after")
    def _one_vram_figure(self) -> ModelOption:
        if self.vram_gb is not None and self.vram_mb is not None:
            raise ValueError("give either vram_gb or vram_mb, not both")
        if self.framework != Framework.EXTERNAL_API and self.vram_gb is None and self.vram_mb is None:
            raise ValueError("needs vram_gb or vram_mb (only external_api options may have neither)")
        return self

    @property
    def is_external(self) -> bool:
        return self.framework == Framework.EXTERNAL_API

    @property
    def vram_gib(self) -> float:
        """VRAM need in GiB (1024**3 bytes), whichever unit the option used."""
        if self.vram_gb is not None:
            return float(self.vram_gb)
        if self.vram_mb is not None:
            return float(self.vram_mb) / 1024.0
        return 0.0


class TaskSpec(Wire):
    description: str | None = None
    options: dict[str, ModelOption] = Field(default_factory=dict)


class InferenceSettings(Wire):
    max_memory_per_model: float | Literal["auto"] = "auto"
    offload_threshold: float = Field(default=0.8, gt=0, le=1)
    warmup_on_startup: bool = True
    default_batch_size: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=8, ge=1)


class GpuOverride(Wire):
    """GPU facts for a node without feature-discovery labels."""

    node: str = Field(min_length=1)
    count: int = Field(ge=1)
    memory_gb: float = Field(gt=0)
    product: str | None = None


class CatalogSpec(Wire):
    tasks: dict[str, TaskSpec] = Field(default_factory=dict)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    sharing_mode: SharingMode = SharingMode.TIME_SLICED
    gpu_overrides: list[GpuOverride] = Field(default_factory=list)

    def option(self, task: str, model: str) -> ModelOption | None:
        spec = self.tasks.get(task)
        return None if spec is None else spec.options.get(model)


class SelectionSpec(Wire):
    task: str = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    model: str | None = Field(
        default=None, max_length=63, description="Option name in the catalog; empty means none"
    )
    catalog: str = Field(default="default", min_length=1, description="ModelCatalog name")
    priority: int = Field(default=DEFAULT_PRIORITY, ge=PRIORITY_MIN, le=PRIORITY_MAX)
    device_policy: DevicePolicy = DevicePolicy.AUTO
    load_policy: LoadPolicy = LoadPolicy.EAGER
    wanted: bool = Field(
        default=False, description="On-demand selections load once wanted (/load, first use)"
    )


class Condition(Wire):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class RuntimeReport(Wire):
    """What the model-server process reports about itself (it owns this subtree)."""

    state: Literal["Loading", "Ready", "Failed"]
    reason: str | None = None
    pod: str | None = None
    model_id: str | None = None
    device: str | None = None
    simulated_gpu: bool = False
    random_weights: bool = False
    measured_memory_gb: float | None = None
    memory_breakdown: dict[str, float] = Field(default_factory=dict)
    load_time_seconds: float | None = None
    last_used: str | None = None
    heartbeat: str | None = None


class SelectionStatus(Wire):
    """Written by the operator, except `runtime`, written by the model pod."""

    phase: Phase = Phase.PENDING
    message: str | None = None
    model: str | None = None
    model_id: str | None = None
    device: str | None = None
    node: str | None = None
    gpu_index: int | None = None
    pod: str | None = None
    declared_memory_gb: float | None = None
    measured_memory_gb: float | None = None
    load_time_seconds: float | None = None
    last_used: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    runtime: RuntimeReport | None = None


class ModelCatalog(Wire):
    api_version: Literal["fovea.dev/v1alpha1"] = "fovea.dev/v1alpha1"
    kind: Literal["ModelCatalog"] = "ModelCatalog"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: CatalogSpec


class ModelSelection(Wire):
    api_version: Literal["fovea.dev/v1alpha1"] = "fovea.dev/v1alpha1"
    kind: Literal["ModelSelection"] = "ModelSelection"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: SelectionSpec
    status: SelectionStatus | None = None


def selection_name(task: str) -> str:
    """The deterministic ModelSelection name of a task (DNS-1123: `_` becomes `-`)."""
    return task.lower().replace("_", "-").replace(".", "-")

