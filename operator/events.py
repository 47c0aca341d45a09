"""The Events a selection's condition transitions tell (posted after its status write)."""

from __future__ import annotations

from fovea.domain import placement
from fovea.domain.conditions import (
    MAX_EVENT_MESSAGE,
    ConditionStatus,
    EventType,
    Reason,
    transitioned,
    truncate,
)
from fovea.operator.decisions import Decided, Event, Selection

# Ready reasons told as Events when the condition changes to them.
_TOLD = frozenset({Reason.LOADED, Reason.LOAD_FAILED, Reason.WEIGHTS_FAILED})
# Scheduled=False reasons that are a user's choice rather than a problem.
_QUIET = frozenset({Reason.NO_MODEL_SELECTED, Reason.WAITING_FOR_DEMAND, Reason.IDLE_UNLOADED})


def selection_events(
    sel: Selection, d: Decided, move: placement.Move | None, previous: list[dict[str, object]]
) -> tuple[Event, ...]:
    def event(type_: EventType, reason: Reason, message: str) -> Event:
        return Event(
            sel.namespace, sel.name, sel.uid, type_, reason, truncate(message, MAX_EVENT_MESSAGE)
        )

    out = []
    s, r = d.scheduled, d.ready
    if transitioned(previous, s):
        warn = s.status == ConditionStatus.FALSE and s.reason not in _QUIET
        warn = warn or s.reason == Reason.CPU_FALLBACK
        out.append(event(EventType.WARNING if warn else EventType.NORMAL, s.reason, s.message))
    elif move is not None and s.reason == Reason.PLACED:
        out.append(event(EventType.NORMAL, Reason.RESCHEDULED, f"{move.reason}"))
    old_pod = sel.status.get("pod")
    new_pod = d.status.pod
    if (
        old_pod
        and new_pod
        and old_pod != new_pod
        and sel.status.get("model") == d.status.model
        and sel.status.get("node") == d.status.node
        and sel.status.get("plannedGpuIndex") == d.status.planned_gpu_index
    ):
        msg = f"The pod spec changed (image or settings): pod {new_pod} replaces {old_pod}"
        out.append(event(EventType.NORMAL, Reason.POD_REPLACED, msg))
    if r.reason in _TOLD and transitioned(previous, r):
        warn = r.reason in (Reason.LOAD_FAILED, Reason.WEIGHTS_FAILED)
        out.append(event(EventType.WARNING if warn else EventType.NORMAL, r.reason, r.message))
    return tuple(out)
