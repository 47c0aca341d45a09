"""Pure decision: has a selection's new model loaded, failed, or not yet?

Used by `/select?wait=` and `/load?wait=`, which re-evaluate it after every
change the cache sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fovea.api.state import Selection
from fovea.domain.conditions import ConditionType, Phase, Reason, RuntimeState
from fovea.domain.messages import failed_to_load

_FAILED_PHASES = (Phase.FAILED.value, Phase.UNSCHEDULABLE.value)
_READY_PHASES = (Phase.READY.value, Phase.CPU_FALLBACK.value)


@dataclass(frozen=True)
class Outcome:
    """Pending, ready, or failed with the reason and the contract's message (rendered once)."""

    state: Literal["pending", "ready", "failed"]
    reason: str = ""
    message: str = ""  # failed: "Failed to load model: <reason>", as the operator words it


PENDING = Outcome("pending")


def load_outcome(
    sel: Selection | None, model_id: str, generation: int, model: str | None = None
) -> Outcome:
    """Judge `sel` against the model (`model_id`, option `model`) it should run since
    `generation`.

    Only a status the operator wrote for `generation` or later counts
    (observedGeneration), so a Ready status of the previous model is never
    mistaken for the new one. Ready needs the model pod's own report
    (runtime.state Ready for this model: a warm pod, which switches in place,
    is the selection's pod before and after its switch, so its report must
    name the new model too); external APIs have no pod and are Ready on the
    operator's word.
    """
    if sel is None:
        return PENDING
    status = sel.status
    if (status.observed_generation or 0) < generation:
        return PENDING
    phase = str(status.phase)
    runtime = status.runtime
    if phase in _FAILED_PHASES:
        return _failed(sel, model_id, model)
    if (
        runtime is not None
        and runtime.state == RuntimeState.FAILED
        and _current(sel, model_id, model)
    ):
        reason = runtime.reason or "unknown reason"
        return Outcome("failed", reason, failed_to_load(reason))
    if phase in _READY_PHASES and status.model_id == model_id:
        if status.device == "external":
            return Outcome("ready")
        if (
            runtime is not None
            and runtime.state == RuntimeState.READY
            and _current(sel, model_id, model)
        ):
            return Outcome("ready")
    return PENDING


def _current(sel: Selection, model_id: str, model: str | None) -> bool:
    """Whether the runtime report comes from the pod that runs `model_id` now, about it."""
    runtime = sel.status.runtime
    if runtime is None:
        return False
    if runtime.model_id and runtime.model_id != model_id:
        return False  # a report about another model (a warm pod before its switch)
    if model is not None and runtime.model and runtime.model != model:
        return False
    if runtime.pod and sel.status.pod:
        return runtime.pod == sel.status.pod
    return runtime.model_id == model_id


def _failed(sel: Selection, model_id: str, model: str | None) -> Outcome:
    """A Failed or Unschedulable selection: the pod's reason, else the operator's message.

    The words are `failed_to_load`'s: a pod's failure the operator has already
    written as the status message (Ready reason LoadFailed) is passed on as
    written, anything else (the planner's, the weights fetch's) gets the
    contract's "Failed to load model: " once.
    """
    runtime = sel.status.runtime
    if (
        runtime is not None
        and runtime.state == RuntimeState.FAILED
        and runtime.reason
        and _current(sel, model_id, model)
    ):
        return Outcome("failed", runtime.reason, failed_to_load(runtime.reason))
    message = sel.status.message or str(sel.status.phase)
    ready = next((c for c in sel.status.conditions if c.type == ConditionType.READY), None)
    if ready is not None and ready.reason == Reason.LOAD_FAILED:
        return Outcome("failed", message, message)  # the operator's failed_to_load
    return Outcome("failed", message, failed_to_load(message))
