"""The sentences beside the words: each reason's message template, rendered in one place.

`fovea.domain.conditions` holds the words (phases, reasons, states); this
module holds what is said with them. A message is rendered once, by the
function of its reason, and passed on as written:

- A model pod that cannot serve reports `status.runtime.failure` (a
  `LoadFailure`) and `status.runtime.reason`, the details rendered by
  `failure_reason`: "Out of memory: load failed: CUDA out of memory…",
  "KeyError: 'layer.3.weight'". Never "Failed to load model": that is the
  selection's message, not the pod's.
- The operator writes the selection's message with `say(Reason.LOAD_FAILED,
  reason=…)`: "Failed to load model: <the pod's reason>" (the contract's
  wording, as the original service said it).
- The API's `/select?wait=` and `/load?wait=` answer `failed_to_load(reason)`:
  the same sentence, whether the operator has written it yet or not. The
  command line prints the API's error as it is.

Only the standard library: the command line may import this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from fovea.domain.conditions import Reason

# The contract's error for a model that did not load (or cannot be placed).
FAILED_TO_LOAD: Final = "Failed to load model: {reason}"
# The contract's wording of an out-of-memory failure: what people and alerts look for.
OUT_OF_MEMORY: Final = "Out of memory"
# A reason longer than this is cut (a traceback's message can be huge).
MAX_REASON_CHARS: Final = 600


class LoadFailure(StrEnum):
    """Why a model pod could not serve its model (status.runtime.failure)."""

    OUT_OF_MEMORY = "OutOfMemory"  # the allocator refused memory (CUDA or CPU)
    LOAD_ERROR = "LoadError"  # the adapter's own refusal: missing weights, unknown architecture
    EXCEPTION = "Exception"  # anything else raised while loading: its type and message
    STOPPED_SERVING = "StoppedServing"  # loaded, then stopped serving (an engine's death)
    BAD_ENVIRONMENT = "BadEnvironment"  # the pod's environment does not name a model to load


# Each failure's template: {stage} is load, warm up or measure; {details} the cause's words.
FAILURE_TEMPLATES: Final[dict[LoadFailure, str]] = {
    LoadFailure.OUT_OF_MEMORY: OUT_OF_MEMORY + ": {stage} failed: {details}",
    LoadFailure.LOAD_ERROR: "{details}",
    LoadFailure.EXCEPTION: "{during}{details}",
    LoadFailure.STOPPED_SERVING: "{details}",
    LoadFailure.BAD_ENVIRONMENT: "bad model-pod environment: {details}",
}

# What a missing weights file says: where the file goes, or how to have it fetched.
MISSING_WEIGHTS: Final = (
    "{what} not on disk ({path} does not exist in the model pod){why}: put the file at "
    "{path} in the model-pod image (the model directory /models, docs/model-pod.md), "
    "or give the option a `weights:` source (s3://, hf://, https://, file://) so it is "
    "fetched into the weights cache before the model starts (docs/weights.md){alternative}"
)

# The message of each reason the operator words itself (the planner's reasons,
# Placed, CPUFallback, Evicted, Unschedulable, are its own sentences: fovea.domain.placement;
# QuotaExceeded is fovea.domain.quota's, IdleUnloaded fovea.domain.keepalive's).
TEMPLATES: Final[dict[Reason, str]] = {
    # Scheduled (and Ready) when the selection cannot be resolved to an option
    Reason.CATALOG_INVALID: "ModelCatalog '{catalog}' is invalid: {why}",
    Reason.CATALOG_NOT_FOUND: "ModelCatalog '{catalog}' not found in namespace '{namespace}'",
    Reason.UNKNOWN_TASK: "Task '{task}' is not in ModelCatalog '{catalog}'",
    Reason.NO_MODEL_SELECTED: "No model selected",
    Reason.MODEL_NOT_FOUND: "Model '{model}' not found for task '{task}'",
    Reason.EXTERNAL_API: "External API model '{model_id}' needs no pod",
    Reason.WAITING_FOR_DEMAND: "Load policy onDemand{why}: waits for /load or first use",
    # Ready
    Reason.LOAD_FAILED: FAILED_TO_LOAD,
    Reason.WEIGHTS_FAILED: "Weights {source} could not be fetched: {why}",
    Reason.LOADED: "{model} ready on {device}",
    Reason.POD_CONFIG_ERROR: "Pod {pod} cannot start: {why}",
    Reason.WEIGHTS_FETCHING: "Pod {pod} is fetching the weights {source} into the cache",
    Reason.LOADING: "Pod {pod} is loading {model_id}",
    Reason.POD_SCHEDULING: "Pod {pod} is waiting to be scheduled",
    Reason.POD_REFUSED: "The API server refused pod {pod}: {reason}: {why}",
}


def say(said: Reason, /, **details: object) -> str:
    """The message of reason `said` with its details filled in (KeyError: it has no template)."""
    return TEMPLATES[said].format(**details)


def failed_to_load(reason: str) -> str:
    """The contract's error for a model that did not load: "Failed to load model: <reason>".

    Said once: a message that already is this sentence (a status written by the
    operator, read where its conditions are not at hand) comes back as it is.
    """
    if reason.startswith(FAILED_TO_LOAD.format(reason="")):
        return reason
    return say(Reason.LOAD_FAILED, reason=reason or "unknown reason")


def failure_reason(failure: LoadFailure, details: str, stage: str = "load") -> str:
    """What a model pod reports as status.runtime.reason for `failure` (one line, cut if long)."""
    during = "" if stage == "load" else f"{stage} failed: "
    text = FAILURE_TEMPLATES[failure].format(
        stage=stage, during=during, details=" ".join(details.split())
    )
    if len(text) <= MAX_REASON_CHARS:
        return text
    return text[: MAX_REASON_CHARS - 1] + "…"


def missing_weights(what: str, path: str, why: str = "", alternative: str = "") -> str:
    """A LoadError's words for weights that are not there: where to put them, or fetch them."""
    return MISSING_WEIGHTS.format(what=what, path=path, why=why, alternative=alternative)
