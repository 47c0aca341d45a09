"""Typed schemas of the ModelCatalog and ModelSelection custom resources.

These pydantic models are the single source of the CRDs (see
`fovea.domain.crds`), of catalog import, and of what the operator, the API and
the model pod read and write. Field names are camelCase on the wire, as
Kubernetes conventions ask; Python code uses snake_case.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from fovea.domain.conditions import Phase as Phase  # re-exported: the vocabulary owns it
from fovea.domain.conditions import RuntimeState, SwitchPhase, WeightsPhase
from fovea.domain.messages import LoadFailure
from fovea.domain.weights import WEIGHTS_MOUNT, parse_weights_uri

_T = TypeVar("_T")


PRIORITY_MIN = 0
PRIORITY_MAX = 1000
DEFAULT_PRIORITY = 100
# Bounds that keep the CRD's validation rules cheap (the original ships 9 tasks).
MAX_TASKS = 64
MAX_OPTIONS = 64

# A Kubernetes label value / option key: what a task or option name may be.
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
# An option name, or empty (no model selected).
OPTIONAL_NAME_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$"
# A Kubernetes object name (DNS-1123 subdomain): what a catalog may be called.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


# Where a model pod finds local weights: the platform's model volume. A
# catalog may name a file only there (an absolute path) or relative to it.
MODEL_DIR = "/models"
MAX_MODEL_ID_CHARS = 512


def model_id_problem(model_id: str) -> str | None:
    """Why a catalog's model_id may not be used, or None. The CRD's CEL rules say the same.

    A model id becomes an engine's argument and a path the model pod opens:
    it must not read as a flag, nor name a file outside the model directory.
    """
    if model_id.startswith("-"):
        return "must not start with '-' (an engine would read it as a command-line flag)"
    if ".." in model_id.split("/"):
        return "must not contain a '..' path segment (it would leave the model directory)"
    if model_id.startswith("/") and not model_id.startswith(f"{MODEL_DIR}/"):
        return f"an absolute path must be under {MODEL_DIR}/ (the model directory)"
    return None


class Wire(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=True
    )


class Framework(StrEnum):
    """What serves the model (external_api: a hosted API, no GPU, no pod)."""

    TRANSFORMERS = "transformers"
    PYTORCH = "pytorch"
    ULTRALYTICS = "ultralytics"
    SGLANG = "sglang"
    VLLM = "vllm"
    EXTERNAL_API = "external_api"
    # Seen in the original's shipped models.yaml (audio tasks); no adapter serves them yet.
    WHISPER = "whisper"
    FASTER_WHISPER = "faster_whisper"
    PYANNOTE = "pyannote"


class Speed(StrEnum):
    """Speed class of a model, as the catalog describes it."""

    REAL_TIME = "real_time"
    VERY_FAST = "very_fast"
    FAST = "fast"
    MEDIUM = "medium"
    SLOW = "slow"


class SharingMode(StrEnum):
    """How model pods share a GPU."""

    WHOLE = "whole"  # one pod per GPU, nvidia.com/gpu: 1
    TIME_SLICED = "timeSliced"  # several pods per GPU; VRAM accounting is the guard
    HAMI = "hami"  # HAMi: nvidia.com/gpumem limits per pod
    MIG = "mig"  # MIG profiles: nvidia.com/mig-<profile>
    DRA = "dra"  # Dynamic Resource Allocation: a ResourceClaim pins the planned GPU


class DevicePolicy(StrEnum):
    """Where the model may run: auto (GPU, else CPU when the option allows), gpu, cpu."""

    AUTO = "auto"  # GPU when it fits, else CPU when the option allows
    GPU = "gpu"
    CPU = "cpu"


# keepAlive: how long an on-demand model stays loaded unused (fovea.domain.keepalive).
KEEP_ALIVE_PATTERN = r"^(-1|0|\d+(\.\d+)?|((\d+(\.\d+)?)(h|m|s))+)$"
KEEP_ALIVE_HELP = (
    "How long an on-demand model stays loaded unused: a duration (30s, 5m, 1h30m) or seconds; "
    "-1 pinned (never unloaded for idleness); 0 unloaded right after use"
)


class LoadPolicy(StrEnum):
    """eager: load now; onDemand: load once wanted (/load or first use)."""

    EAGER = "eager"
    ON_DEMAND = "onDemand"


# Weights (docs/weights.md): where a node cache lives, and the fetch container's environment.
WEIGHTS_CACHE_PATH = WEIGHTS_MOUNT  # the node cache: the same path on the host as in the pod
DEFAULT_WEIGHTS_CACHE_GB = 50.0
MAX_WEIGHTS_URI_CHARS = 2048
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# A Secret or PVC name (DNS-1123 subdomain, at most 253).
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# What `weights_env` may set in the fetch container: endpoints and proxies, nothing that
# changes how the process runs (no LD_PRELOAD, PATH, PYTHON*). Credentials come from a Secret.
WEIGHTS_ENV_NAMES = (
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
ABS_PATH_PATTERN = r"^/([^/]+/?)*$"


def weights_uri_problem(uri: str) -> str | None:
    """Why a `weights:` URI may not be used, or None (`fovea.domain.weights` parses it)."""
    try:
        parse_weights_uri(uri)
    except ValueError as exc:
        return str(exc)
    return None


class ModelOption(Wire):
    """One model a task can use: an entry of `models.yaml`."""

    model_id: str = Field(
        min_length=1,
        max_length=MAX_MODEL_ID_CHARS,
        description=f"Hugging Face model id, local name, or a file under {MODEL_DIR}/",
    )
    framework: Framework = Framework.PYTORCH
    vram_gb: float | None = Field(default=None, ge=0, description="VRAM need in GiB")
    vram_mb: float | None = Field(default=None, ge=0, description="VRAM need in MiB")
    cpu_memory_gb: float | None = Field(
        default=None, ge=0, description="Memory on CPU; set it to allow CPU fallback"
    )
    speed: Speed | None = None
    description: str | None = None
    fps: float | None = Field(default=None, ge=0, description="Frames per second (VLMs)")
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
    keep_alive: str | None = Field(
        default=None,
        pattern=KEEP_ALIVE_PATTERN,
        description=KEEP_ALIVE_HELP,
    )
    weights: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_WEIGHTS_URI_CHARS,
        pattern=r"^(hf|s3|https?|pvc|file)://",
        description="Where the weights come from: hf://org/name[@revision], s3://bucket/prefix, "
        "https://..., http://..., pvc://claim/path or file:///path. Fetched into the "
        "catalog's weightsCache before the model starts; unset: modelId is a hub repository",
    )
    weights_sha256: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="sha256 (lowercase hex) the weights must have: a single file's, or a "
        "directory's manifest (lines '<sha256>  <path>' sorted by path)",
    )

    @field_validator("weights", mode="before")
    @classmethod
    def _known_weights_uri(cls, value: object) -> object:
        problem = weights_uri_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise ValueError(problem)  # it names the URI
        return value

    @field_validator("weights_sha256", mode="before")
    @classmethod
    def _hex_digest(cls, value: object) -> object:
        if isinstance(value, str):
            if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
                raise ValueError(f"weights_sha256 must be 64 hex digits (a sha256), got {value!r}")
            return value.lower()
        return value

    @field_validator("model_id")
    @classmethod
    def _safe_model_id(cls, value: str) -> str:
        problem = model_id_problem(value)
        if problem is not None:
            raise ValueError(f"model_id {value[:100]!r} {problem}")
        return value

    @model_validator(mode="after")
    def _one_vram_figure(self) -> ModelOption:
        if self.vram_gb is not None and self.vram_mb is not None:
            raise ValueError("give either vram_gb or vram_mb, not both")
        if (
            self.framework != Framework.EXTERNAL_API
            and self.vram_gb is None
            and self.vram_mb is None
        ):
            raise ValueError(
                "needs vram_gb or vram_mb (only external_api options may have neither)"
            )
        if self.weights_sha256 is not None and self.weights is None:
            raise ValueError("weights_sha256 needs weights (the source it checks)")
        if self.weights is not None and self.is_external:
            raise ValueError("an external_api option has no weights to fetch")
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
    """One task (object_detection, ...): the models it may use, by option name."""

    description: str | None = None
    options: dict[str, ModelOption] = Field(
        default_factory=dict,
        max_length=MAX_OPTIONS,
        description="Models for this task, by option name",
    )

    @field_validator("options")
    @classmethod
    def _option_names(cls, options: dict[str, ModelOption]) -> dict[str, ModelOption]:
        return _check_names(options, "option")


class InferenceSettings(Wire):
    """How models are loaded and how full a GPU may get."""

    max_memory_per_model: float | Literal["auto"] = Field(
        default="auto", description="GiB one model may use, or auto"
    )
    offload_threshold: float = Field(
        default=0.8, gt=0, le=1, description="Fraction of each GPU's memory models may fill"
    )
    warmup_on_startup: bool = Field(
        default=True,
        description="Load selected models at once; false: only once wanted (/load, first use). "
        "A selection's loadPolicy overrides it",
    )
    default_batch_size: int = Field(
        default=1, ge=1, description="Batch of the warm-up pass each model pod runs after loading"
    )
    max_batch_size: int = Field(default=8, ge=1)

    @field_validator("max_memory_per_model", mode="before")
    @classmethod
    def _number_or_auto(cls, value: object) -> object:
        if value == "auto":
            return value
        problem = f"must be a positive number of GiB or 'auto', got {value!r}"
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(problem)
        try:
            number = float(value)
        except ValueError:
            raise ValueError(problem) from None
        if not number > 0:
            raise ValueError(problem)
        return number

    @model_validator(mode="after")
    def _batch_sizes(self) -> InferenceSettings:
        if self.default_batch_size > self.max_batch_size:
            raise ValueError(
                f"default_batch_size ({self.default_batch_size}) exceeds "
                f"max_batch_size ({self.max_batch_size})"
            )
        return self

    @property
    def memory_limit_gib(self) -> float | None:
        """The most VRAM one model may declare, in GiB; None for auto (only the GPUs limit it)."""
        limit = self.max_memory_per_model
        return None if limit == "auto" else float(limit)

    @property
    def default_load_policy(self) -> LoadPolicy:
        """The load policy of selections that set none: warmup_on_startup means eager."""
        return LoadPolicy.EAGER if self.warmup_on_startup else LoadPolicy.ON_DEMAND


class GpuOverride(Wire):
    """GPU facts for a node without feature-discovery labels."""

    node: str = Field(min_length=1)
    count: int = Field(ge=1)
    memory_gb: float = Field(gt=0)
    product: str | None = None


class WeightsCacheKind(StrEnum):
    """Where fetched weights are kept."""

    NODE = "node"  # a directory on each node (hostPath): fetched once per node
    SHARED = "shared"  # a ReadWriteMany PVC in the selection's namespace: fetched once


class WeightsCache(Wire):
    """The catalog's weights cache: per node or shared, with a size (LRU beyond it)."""

    kind: WeightsCacheKind = Field(
        default=WeightsCacheKind.NODE,
        description="node: a host directory on each node; shared: a ReadWriteMany PVC",
    )
    path: str = Field(
        default=WEIGHTS_CACHE_PATH,
        max_length=1024,
        pattern=ABS_PATH_PATTERN,
        description="node: the host directory (hostPath) of the cache",
    )
    claim: str | None = Field(
        default=None,
        max_length=253,
        pattern=SECRET_NAME_PATTERN,
        description="shared: the ReadWriteMany PVC (in the selection's namespace)",
    )
    size_gb: float = Field(
        default=DEFAULT_WEIGHTS_CACHE_GB,
        gt=0,
        description="GiB the cache may hold; least recently used weights are evicted beyond it",
    )

    @field_validator("path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if ".." in value.split("/") or value.rstrip("/") == "":
            raise ValueError(f"path {value!r} must be an absolute directory without '..'")
        return value

    @model_validator(mode="after")
    def _claim_when_shared(self) -> WeightsCache:
        if self.kind == WeightsCacheKind.SHARED and not self.claim:
            raise ValueError("a shared weights cache needs claim (a ReadWriteMany PVC)")
        if self.kind == WeightsCacheKind.NODE and self.claim:
            raise ValueError("claim is for kind shared; a node cache uses path")
        return self


class WeightsCredentials(Wire):
    """The Secret (in the selection's namespace) whose keys become the fetch container's env."""

    secret: str = Field(
        min_length=1,
        max_length=253,
        pattern=SECRET_NAME_PATTERN,
        description="Secret name; keys such as HF_TOKEN, AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY (the operator never reads it)",
    )


class CatalogSpec(Wire):
    """The models.yaml of the original model service, as a resource."""

    tasks: dict[str, TaskSpec] = Field(
        default_factory=dict, max_length=MAX_TASKS, description="Tasks by name"
    )
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    sharing_mode: SharingMode = Field(
        default=SharingMode.TIME_SLICED, description="How model pods share a GPU"
    )
    gpu_overrides: list[GpuOverride] = Field(
        default_factory=list, description="GPU facts for nodes without feature-discovery labels"
    )
    weights_cache: WeightsCache = Field(
        default_factory=WeightsCache, description="Where options' weights are cached"
    )
    weights_credentials: WeightsCredentials | None = Field(
        default=None, description="Secret with the fetch's credentials (HF_TOKEN, AWS_*)"
    )
    weights_env: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret settings of the fetch: " + ", ".join(WEIGHTS_ENV_NAMES),
    )

    @field_validator("weights_env")
    @classmethod
    def _known_env(cls, env: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(env) - set(WEIGHTS_ENV_NAMES))
        if unknown:
            raise ValueError(
                f"weights_env may set only {', '.join(WEIGHTS_ENV_NAMES)}; not {unknown[0]!r} "
                "(credentials go in the weights_credentials Secret)"
            )
        return env

    @field_validator("tasks")
    @classmethod
    def _task_names(cls, tasks: dict[str, TaskSpec]) -> dict[str, TaskSpec]:
        _check_names(tasks, "task")
        seen: dict[str, str] = {}
        for task in tasks:  # the CRD cannot say this: one ModelSelection name per task
            first = seen.setdefault(selection_name(task), task)
            if first != task:
                raise ValueError(
                    f"tasks {first!r} and {task!r} would share the ModelSelection name "
                    f"{selection_name(task)!r} (task names may not differ only by case, '_', "
                    "'-' or '.'): rename one of them"
                )
        return tasks

    @field_validator("gpu_overrides")
    @classmethod
    def _one_override_per_node(cls, overrides: list[GpuOverride]) -> list[GpuOverride]:
        nodes = [o.node for o in overrides]
        dupes = sorted({n for n in nodes if nodes.count(n) > 1})
        if dupes:
            raise ValueError(f"more than one override for node {', '.join(dupes)}")
        return overrides

    def option(self, task: str, model: str) -> ModelOption | None:
        spec = self.tasks.get(task)
        return None if spec is None else spec.options.get(model)


class SelectionSpec(Wire):
    """The model one task should use, and how much it matters."""

    task: str = Field(
        min_length=1, max_length=63, pattern=NAME_PATTERN, description="Task in the catalog"
    )
    model: str | None = Field(
        default=None,
        max_length=63,
        pattern=OPTIONAL_NAME_PATTERN,
        description="Option name in the catalog; empty means none",
    )
    catalog: str = Field(
        default="default",
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="ModelCatalog name (same namespace)",
    )
    priority: int = Field(
        default=DEFAULT_PRIORITY,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="Higher keeps its GPU; lower or equal, less recently used, is evicted first",
    )
    device_policy: DevicePolicy = DevicePolicy.AUTO
    load_policy: LoadPolicy | None = Field(
        default=None,
        description="eager: load now; onDemand: load once wanted (/load or first use); "
        "unset: the catalog's warmupOnStartup decides (true: eager)",
    )
    wanted: bool = Field(
        default=False, description="On-demand selections load once wanted (/load, first use)"
    )
    keep_alive: str | None = Field(
        default=None,
        pattern=KEEP_ALIVE_PATTERN,
        description=KEEP_ALIVE_HELP + "; overrides the option's",
    )
    load_requested_at: str | None = Field(
        default=None,
        description="RFC 3339 time of the last /load (written by the API): activity that "
        "reloads a model unloaded for idleness",
    )

    def effective_load_policy(self, inference: InferenceSettings) -> LoadPolicy:
        """The load policy in force: the selection's own, else the catalog's."""
        if self.load_policy is None:
            return inference.default_load_policy
        return LoadPolicy(self.load_policy)


class Condition(Wire):
    """A standard Kubernetes condition (types and reasons: `fovea.domain.conditions`)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class ParkedModel(Wire):
    """A model a warm pod keeps in host memory after switching away (docs/architecture.md)."""

    model: str = Field(description="The catalog's option")
    model_id: str | None = None
    measured_memory_gb: float = Field(description="Its parameters and buffers, measured")
    parked_at: str = Field(description="When it was parked (RFC 3339)")
    keep_warm_until: str = Field(description="When it is dropped unless selected again")


class WeightsReport(Wire):
    """Where a model's weights stand (the fetch-weights container's report, docs/weights.md)."""

    phase: WeightsPhase
    source: str | None = None
    revision: str | None = None
    sha256: str | None = Field(default=None, description="What was verified (or computed)")
    bytes_done: int = Field(default=0, ge=0)
    bytes_total: int | None = Field(default=None, ge=0, description="Unset: not known")
    bytes_per_second: float | None = Field(default=None, ge=0)
    fetched_bytes: int = Field(
        default=0, ge=0, description="Bytes this fetch downloaded; 0 when already cached"
    )
    message: str | None = Field(default=None, description="The reason when Failed")
    updated_at: str | None = None


class PhaseStamp(Wire):
    """One step of a switch and when it happened (RFC 3339, UTC, milliseconds)."""

    name: SwitchPhase
    at: str


class RuntimeReport(Wire):
    """What the model pod reports about itself (it owns this subtree; weights: its fetch)."""

    state: RuntimeState | None = None
    failure: LoadFailure | None = Field(
        default=None, description="Failed: what failed (the reason says it in words)"
    )
    reason: str | None = None
    pod: str | None = None
    model_id: str | None = None
    # Warm pods (docs/architecture.md, "Warm switches"): which option this report is about,
    # which one answers now (they differ while a switch loads and after one failed), where
    # the model came from, how often this process read weights from disk, what it parks.
    model: str | None = Field(default=None, description="The option this report is about")
    serving_model: str | None = Field(
        default=None, description="The option whose answers the pod gives now"
    )
    load_source: str | None = Field(
        default=None, description="disk: loaded from its weights; parked: from host memory"
    )
    disk_loads: int | None = Field(
        default=None,
        description="Loads from disk this process began since it started (none from parked)",
    )
    parked: list[ParkedModel] = Field(
        default_factory=list, description="Models kept in host memory for a switch back"
    )
    runtime_overhead_gb: float | None = Field(
        default=None,
        description="The process's resident memory beside its models' (framework, runtime)",
    )
    device: str | None = None
    simulated_gpu: bool = False
    random_weights: bool = False
    measured_memory_gb: float | None = None
    memory_breakdown: dict[str, float] = Field(default_factory=dict)
    load_time_seconds: float | None = None
    last_used: str | None = None
    heartbeat: str | None = None
    weights: WeightsReport | None = None
    phases: list[PhaseStamp] = Field(
        default_factory=list,
        description="The pod's own steps of its latest load, on its clock (ProcessStarted, "
        "RuntimeReady, WeightsReady, Loaded, Warmed)",
    )


class AllocatedDeviceStatus(Wire):
    """dra mode: the GPU the scheduler allocated to the pod's ResourceClaim (read from it)."""

    uuid: str | None = None
    index: int | None = None
    driver: str
    pool: str
    device: str
    claim: str


class EndpointStatus(Wire):
    """Where the task's requests go (docs/inference.md): a stable address across switches."""

    service: str = Field(description="The selection's Service, in its namespace")
    url: str = Field(description="In-cluster address of the serving model: POST {url}/predict")
    route: str = Field(description="The API's inference route of the task (POST)")
    serving_model: str | None = Field(
        default=None, description="The model whose Ready pods the Service selects now"
    )


class LastSwitch(Wire):
    """The steps of the last switch of the selected model, in time order (docs/api.md)."""

    model: str = Field(description="The option switched to")
    from_model: str | None = Field(
        default=None, alias="from", description="The option selected before; unset: first use"
    )
    phases: list[PhaseStamp] = Field(default_factory=list)
    total_seconds: float | None = Field(
        default=None, description="Planned to Ready (or Failed); unset while under way"
    )
    since: str | None = Field(
        default=None,
        description="The previous switch's last step: a pod step after it is this switch's "
        "(a warm pod can act on a switch before the operator's pass sees it)",
    )


class SelectionStatus(Wire):
    """Written by the operator, except `runtime`, written by the model pod."""

    phase: Phase = Phase.PENDING
    message: str | None = None
    model: str | None = None
    model_id: str | None = None
    device: str | None = Field(
        default=None,
        description="cuda:N, cpu or external: what the pod reports using (before it reports: "
        "what it was given)",
    )
    node: str | None = None
    gpu_index: int | None = Field(
        default=None, description="The GPU index the pod itself reports using (its cuda:N)"
    )
    planned_gpu_index: int | None = Field(
        default=None,
        description="Accounting only: the node's GPU the planner counts this model against; "
        "the pod is not pinned to it",
    )
    pod: str | None = None
    allocated_device: AllocatedDeviceStatus | None = Field(
        default=None,
        description="dra mode: the GPU allocated to the pod's ResourceClaim (status.allocation)",
    )
    endpoint: EndpointStatus | None = Field(
        default=None, description="Where the task's requests go; none for an external API"
    )
    declared_memory_gb: float | None = Field(default=None, description="The catalog's figure, GiB")
    measured_memory_gb: float | None = Field(
        default=None, description="What the pod measured itself using, GiB; unset: not measured"
    )
    declared_memory: str | None = Field(
        default=None, description="declaredMemoryGb with its unit, as printed: '0.06 GB'"
    )
    measured_memory: str | None = Field(
        default=None, description="measuredMemoryGb with its unit, as printed: '0.42 GB'"
    )
    load_time_seconds: float | None = Field(default=None, description="Unset: not measured")
    last_used: str | None = Field(default=None, description="RFC 3339 time of the last use")
    idle_unloaded_at: str | None = Field(
        default=None,
        description="RFC 3339 time the operator unloaded the model for idleness (keepAlive); "
        "unset once it loads again",
    )
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    weights: WeightsReport | None = Field(
        default=None, description="The weights of the pod it wants (fetched into the cache)"
    )
    last_switch: LastSwitch | None = Field(
        default=None, description="Where the time of the last switch went, step by step"
    )
    runtime: RuntimeReport | None = None


class CatalogStatus(Wire):
    """Written by the operator: whether the catalog parses, what it offers, what is wrong."""

    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    options: dict[str, list[str]] = Field(
        default_factory=dict, description="Option names per task (empty when not accepted)"
    )
    problems: list[str] = Field(
        default_factory=list, description="Every reason the spec does not parse"
    )


class ModelCatalog(Wire):
    api_version: Literal["fovea.dev/v1alpha1"] = "fovea.dev/v1alpha1"
    kind: Literal["ModelCatalog"] = "ModelCatalog"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: CatalogSpec
    status: CatalogStatus | None = None


class ModelSelection(Wire):
    api_version: Literal["fovea.dev/v1alpha1"] = "fovea.dev/v1alpha1"
    kind: Literal["ModelSelection"] = "ModelSelection"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: SelectionSpec
    status: SelectionStatus | None = None


def _check_names(items: dict[str, _T], what: str) -> dict[str, _T]:
    bad = sorted(name for name in items if not re.match(NAME_PATTERN, name))
    if bad:
        raise ValueError(
            f"{what} name {bad[0]!r} must be 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return items


def selection_name(task: str) -> str:
    """The deterministic ModelSelection name of a task (DNS-1123: `_` becomes `-`)."""
    return task.lower().replace("_", "-").replace(".", "-")
