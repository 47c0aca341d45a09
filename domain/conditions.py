"""The status vocabulary: phases, conditions, reasons, runtime states, how conditions change.

Every word the operator writes into a status phase, condition or Event, and every
state the model pod reports, is a member of one of the enums below; the API,
the command line and the model pod read these enums, never string literals (the
sentences beside the words are `fovea.domain.messages`). Only the standard library:
the command line imports this module. `set_condition`
is the one rule for updating a condition list (Kubernetes' `meta.SetStatusCondition`):
`lastTransitionTime` changes only when the status does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# Kubernetes' limits: an Event's note is 1 KiB, a condition message 32 KiB.
MAX_EVENT_MESSAGE = 1024
MAX_CONDITION_MESSAGE = 32768
CUT = "…"


# The one spelling of eviction: a selection's phase, and the reason of its Scheduled condition.
EVICTED = "Evicted"


class Phase(StrEnum):
    """Where a selection stands (status.phase); conditions and message say why."""

    PENDING = "Pending"
    SCHEDULING = "Scheduling"
    LOADING = "Loading"
    READY = "Ready"
    EVICTED = EVICTED
    CPU_FALLBACK = "CPUFallback"
    UNSCHEDULABLE = "Unschedulable"
    FAILED = "Failed"
    UNSELECTED = "Unselected"


class Outcome(StrEnum):
    """Where the planner puts a demand (`/validate`'s and the what-if's `outcome`, lower case)."""

    GPU = "gpu"
    CPU = "cpu"
    EVICTED = EVICTED.lower()
    UNSCHEDULABLE = "unschedulable"
    EXTERNAL = "external"


class ConditionType(StrEnum):
    """The conditions of ModelSelection and ModelCatalog."""

    SCHEDULED = "Scheduled"  # selection: the planner has a place for the model (or needs none)
    READY = "Ready"  # selection: the model answers requests (or is an external API)
    ACCEPTED = "Accepted"  # catalog: the spec parses and its options can be selected
    DEGRADED = "Degraded"  # selection: on the CPU for want of GPU memory (domain/degraded.py)


class ConditionStatus(StrEnum):
    """A condition's status, as Kubernetes spells it."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Every reason of a condition or an Event the operator writes."""

    # Scheduled=True
    PLACED = "Placed"  # on a GPU the planner chose
    CPU_FALLBACK = "CPUFallback"  # no GPU had room: on the CPU, as the option allows
    ON_CPU = "OnCPU"  # devicePolicy cpu: on the CPU by choice
    EXTERNAL_API = "ExternalAPI"  # a hosted API: nothing to place, no pod
    # Scheduled=False
    INVALID_SPEC = "InvalidSpec"  # the stored spec does not parse
    CATALOG_NOT_FOUND = "CatalogNotFound"  # no ModelCatalog of that name in the namespace
    CATALOG_INVALID = "CatalogInvalid"  # the ModelCatalog exists but does not parse
    UNKNOWN_TASK = "UnknownTask"  # the catalog has no such task
    NO_MODEL_SELECTED = "NoModelSelected"  # spec.model is empty
    MODEL_NOT_FOUND = "ModelNotFound"  # the task has no such option
    IMAGE_NOT_ALLOWED = "ImageNotAllowed"  # the option's image is not in the operator's allowlist
    EXCEEDS_MAX_MEMORY = "ExceedsMaxMemoryPerModel"  # above the catalog's maxMemoryPerModel
    WAITING_FOR_DEMAND = "WaitingForDemand"  # onDemand and not wanted yet
    IDLE_UNLOADED = "IdleUnloaded"  # onDemand, unused for its keepAlive: pod removed
    EVICTED = EVICTED  # a higher-priority selection took its GPU
    UNSCHEDULABLE = "Unschedulable"  # larger than any GPU (and no CPU fallback)
    QUOTA_EXCEEDED = "QuotaExceeded"  # over its namespace's GPU-memory quota
    POD_REFUSED = "PodRefused"  # the API server refused the pod (ResourceQuota, admission)
    # Ready
    LOADED = "Loaded"  # the model pod reports Ready and passes its readiness probe
    LOADING = "Loading"  # the pod runs and loads the model
    POD_SCHEDULING = "PodScheduling"  # the pod waits for the scheduler (or to be created)
    LOAD_FAILED = "LoadFailed"  # the model pod reports Failed, with the reason
    POD_CONFIG_ERROR = "PodConfigError"  # kubelet: CreateContainerConfigError (missing Secret...)
    WEIGHTS_FETCHING = "WeightsFetching"  # the fetch-weights init container fills the cache
    WEIGHTS_FAILED = "WeightsFailed"  # the weights could not be fetched: status.weights says why
    # Events only
    RESCHEDULED = "Rescheduled"  # the planner moved the model to another node or GPU
    POD_REPLACED = "PodReplaced"  # the pod spec changed (image, settings): a new pod rolls out
    # ModelCatalog Accepted
    VALID = "Valid"  # the catalog parses
    INVALID = "Invalid"  # the catalog does not parse: status.problems says why


class EventType(StrEnum):
    """Kubernetes Event types."""

    NORMAL = "Normal"
    WARNING = "Warning"


class RuntimeState(StrEnum):
    """What a model pod reports about its one model (status.runtime.state)."""

    LOADING = "Loading"  # loading, warming up or measuring
    READY = "Ready"  # loaded, warm and measured
    FAILED = "Failed"  # could not load; status.runtime.reason says why


class SwitchPhase(StrEnum):
    """The steps of a switch, as status.lastSwitch.phases names them (docs/api.md).

    The operator stamps Planned, PodBound, Ready and Failed from what it sees; the
    model pod stamps the others on its own clock (status.runtime.phases).
    """

    PLANNED = "Planned"  # the operator's pass that first saw the new model decided its pod
    POD_BOUND = "PodBound"  # the operator saw the pod bound to a node
    PROCESS_STARTED = "ProcessStarted"  # the model pod's process began (the OS's start time)
    RUNTIME_READY = "RuntimeReady"  # the process imported its framework: ready to load
    WEIGHTS_READY = "WeightsReady"  # fetched weights held on the node's disk (options with weights)
    LOADED = "Loaded"  # the model is in memory on its device
    WARMED = "Warmed"  # the warm-up forward pass is done (and memory measured)
    READY = "Ready"  # the operator's pass saw the pod Ready and set the phase
    FAILED = "Failed"  # the operator's pass saw the switch fail (status.message says why)


class WeightsPhase(StrEnum):
    """Where a model's weights stand (status.weights.phase), as the fetch-weights container says."""

    FETCHING = "Fetching"  # downloading (or checking) into the cache
    CACHED = "Cached"  # complete and verified in the cache
    FAILED = "Failed"  # could not be fetched; status.weights.message says why


@dataclass(frozen=True)
class ConditionValue:
    """A condition as decided, before it gets its times."""

    type: ConditionType
    status: ConditionStatus
    reason: Reason
    message: str

    @classmethod
    def of(cls, type_: ConditionType, ok: bool, reason: Reason, message: str) -> ConditionValue:
        status = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
        return cls(type_, status, reason, truncate(message, MAX_CONDITION_MESSAGE))


def truncate(message: str, limit: int) -> str:
    """At most `limit` characters, cut in the middle as Kubernetes' clients do."""
    if len(message) <= limit:
        return message
    keep = limit - len(CUT)
    head = keep // 2
    return message[:head] + CUT + message[len(message) - (keep - head) :]


def set_condition(
    previous: Sequence[dict[str, object]],
    value: ConditionValue,
    *,
    now: str,
    generation: int,
) -> dict[str, object]:
    """The wire form of `value`: lastTransitionTime kept unless the status changes."""
    prev = next((c for c in previous if c.get("type") == value.type.value), None)
    stamp = now
    if prev is not None and prev.get("status") == value.status.value:
        stamp = str(prev.get("lastTransitionTime") or now)
    return {
        "type": value.type.value,
        "status": value.status.value,
        "reason": value.reason.value,
        "message": value.message,
        "lastTransitionTime": stamp,
        "observedGeneration": generation,
    }


def transitioned(
    previous: Sequence[dict[str, object]], value: ConditionValue, *, reason_change: bool = True
) -> bool:
    """Whether `value` differs from the previous condition of its type (status, or reason)."""
    prev = next((c for c in previous if c.get("type") == value.type.value), None)
    if prev is None:
        return True
    if prev.get("status") != value.status.value:
        return True
    return reason_change and prev.get("reason") != value.reason.value
