"""Pure decision: has a selection's new model loaded, failed, or not yet?

Used by `/select?wait=` and `/load?wait=`, which re-evaluate it after every
change the cache sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fovea.api.state import Selection
from fovea.domain.conditions import RuntimeState
from fovea.domain.resources import Phase

FAILED_PREFIX = "Failed to load model: "
_FAILED_PHASES = (Phase.FAILED.value, Phase.UNSCHEDULABLE.value)
_READY_PHASES = (Phase.READY.value, Phase.CPU_FALLBACK.value)


@dataclass(frozen=True)
class Outcome:
    state: Literal["pending", "ready", "failed"]
    reason: str = ""


PENDING = Outcome("pending")


def load_outcome(sel: Selection | None, model_id: str, generation: int) -> Outcome:
    """Judge `sel` against the model it should run since `generation`.

    Only a status the operator wrote for `generation` or later counts
    (observedGeneration), so a Ready status of the previous model is never
    mistaken for the new one. Ready needs the model pod's own report
    (runtime.state Ready for this model); external APIs have no pod and are
    Ready on the operator's word.
    """
    if sel is None:
        return PENDING
    status = sel.status
    if (status.observed_generation or 0) < generation:
        return PENDING
    phase = str(status.phase)
    runtime = status.runtime
    if phase in _FAILED_PHASES:
        return Outcome("failed", _failure_reason(sel, model_id))
    if runtime is not None and runtime.state == RuntimeState.FAILED and _current(sel, model_id):
        return Outcome("failed", runtime.reason or "unknown reason")
    if phase in _READY_PHASES and status.model_id == model_id:
        if status.device == "external":
            return Outcome("ready")
        if runtime is not None and runtime.state == RuntimeState.READY and _current(sel, model_id):
            return Outcome("ready")
    return PENDING


def _current(sel: Selection, model_id: str) -> bool:
    """Whether the runtime report comes from the pod that runs `model_id` now."""
    runtime = sel.status.runtime
    if runtime is None:
        return False
    if runtime.pod and sel.status.pod:
        return runtime.pod == sel.status.pod
    return runtime.model_id == model_id


def _failure_reason(sel: Selection, model_id: str) -> str:
    runtime = sel.status.runtime
    if (
        runtime is not None
        and runtime.state == RuntimeState.FAILED
        and runtime.reason
        and _current(sel, model_id)
    ):
        return runtime.reason
    message = sel.status.message or str(sel.status.phase)
    # The operator already words load failures as "Failed to load model: ...".
    return message.removeprefix(FAILED_PREFIX)
