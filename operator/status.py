"""What the status says: one selection's decision, in phases, conditions and messages.

`decide` turns a resolved selection and its placement into the pod it should have
and the status that tells it; the adjustments after it (a quota refusal, the API
server or the scheduler refusing the pod, Degraded on the CPU) and `finish`, which
compares with what is stored and tells the transitions as Events. The catalog's
status too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fovea.domain import constants as c
from fovea.domain import degraded, placement
from fovea.domain.conditions import (
    MAX_EVENT_MESSAGE,
    ConditionStatus,
    ConditionType,
    ConditionValue,
    EventType,
    Reason,
    RuntimeState,
    SwitchPhase,
    WeightsPhase,
    set_condition,
    transitioned,
    truncate,
)
from fovea.domain.messages import failed_to_load, say
from fovea.domain.nodes import Refusals, refusals
from fovea.domain.placement import Outcome
from fovea.domain.resources import (
    CatalogSpec,
    CatalogStatus,
    Condition,
    DevicePolicy,
    LastSwitch,
    Phase,
    PhaseStamp,
    SelectionStatus,
)
from fovea.domain.switch import next_switch
from fovea.domain.units import format_size, round_gb
from fovea.operator.decisions import (
    Catalog,
    CatalogDecision,
    Decided,
    Event,
    Problem,
    Raw,
    Resolved,
    Selection,
    SelectionDecision,
)
from fovea.operator.events import selection_events
from fovea.operator.handover import handover, incarnation
from fovea.operator.pods import pod_config_error, pod_is_ready
from fovea.operator.podspec import PodSettings, SelectionRef, Target, build_pod
from fovea.operator.warm import adopt, group_of
from fovea.operator.weights_pod import WeightsSettings
from fovea.operator.weights_status import progress_text, weights_status

NOT_MEASURED = "memory not measured"
_Stored = TypeVar("_Stored", bound=BaseModel)


def decide(
    r: Resolved,
    place: placement.Placement | None,
    spare_gib: float,
    cpu_node: str | None,
    own_pods: list[Raw],
    settings: PodSettings,
    claim: str | None = None,
) -> Decided:
    sel, spec, option, catalog = r.sel, r.sel.spec, r.option, r.catalog
    base = SelectionStatus(
        model=spec.model if spec else None,
        model_id=option.model_id if option else None,
        declared_memory_gb=round_gb(option.vram_gib) if option else None,
        declared_memory=format_size(option.vram_gib) if option else None,
        last_used=sel.status.get("lastUsed"),  # a model pod's report, or a user's patch
        observed_generation=sel.generation,
    )
    if r.problem is not None:
        p = r.problem
        external = p.reason == Reason.EXTERNAL_API
        status = base.model_copy(
            update={
                "phase": p.phase,
                "message": p.message,
                "device": "external" if external else None,
                "idle_unloaded_at": p.idle_unloaded_at,
            }
        )
        scheduled = ConditionValue.of(ConditionType.SCHEDULED, external, p.reason, p.message)
        ready = ConditionValue.of(ConditionType.READY, external, p.reason, p.message)
        return Decided(status, scheduled, ready)
    assert place is not None and option is not None and spec is not None and catalog is not None
    if place.outcome in (Outcome.EVICTED, Outcome.UNSCHEDULABLE):
        evicted = place.outcome == Outcome.EVICTED
        phase = Phase.EVICTED if evicted else Phase.UNSCHEDULABLE
        reason = Reason.EVICTED if evicted else Reason.UNSCHEDULABLE
        status = base.model_copy(update={"phase": phase, "message": place.reason})
        return Decided(
            status,
            ConditionValue.of(ConditionType.SCHEDULED, False, reason, place.reason),
            ConditionValue.of(ConditionType.READY, False, reason, place.reason),
        )

    on_gpu = place.outcome == Outcome.GPU
    target = Target(place.node, place.gpu_index) if on_gpu else Target(cpu_node, None)
    pod = build_pod(
        SelectionRef(sel.namespace, sel.name, sel.uid, spec.task, spec.model or ""),
        option,
        target,
        settings,
        claim=claim,
        batch_size=catalog.inference.default_batch_size,
        avoid_nodes=refusals(own_pods).nodes,
        weights=WeightsSettings.of(catalog),
        warm=group_of(r, settings, settings.sharing_mode),
    )
    pod = dict(adopt(pod, own_pods))  # a warm pod takes the next model of its group in place
    pod = dict(incarnation(pod, own_pods))  # a switch back does not wait for a drain
    name = str(pod["metadata"]["name"])
    existing = next((p for p in own_pods if p["metadata"]["name"] == name), None)
    create, keep = handover(pod, existing, own_pods, spare_gib)
    fallback = place.outcome == Outcome.CPU and spec.device_policy != DevicePolicy.CPU
    cpu_reason = Reason.CPU_FALLBACK if fallback else Reason.ON_CPU
    sched_reason = Reason.PLACED if on_gpu else cpu_reason
    scheduled = ConditionValue.of(ConditionType.SCHEDULED, True, sched_reason, place.reason)

    runtime = sel.status.get("runtime") or {}
    # The report of a pod of this name that is terminating is an earlier incarnation's.
    earlier = existing is not None and bool(existing["metadata"].get("deletionTimestamp"))
    # A warm pod reports the model it was asked for (runtime.model): not yet the selected one
    # while it follows the selection, and then not this model's report.
    current = (
        runtime.get("pod") == name and not earlier and runtime.get("model") in (None, spec.model)
    )
    device = "cuda:0" if on_gpu else "cpu"  # what the pod is given (FOVEA_DEVICE)
    measured = runtime.get("measuredMemoryGb") if current else None
    load_time = runtime.get("loadTimeSeconds") if current else None
    if current and runtime.get("device"):
        device = str(runtime["device"])
    state = runtime.get("state") if current else None
    pod_ready = existing is not None and not earlier and pod_is_ready(existing)
    config_error = pod_config_error(existing) if existing is not None else None
    secret = catalog.weights_credentials.secret if catalog.weights_credentials else None
    weights = weights_status(option, runtime, current, existing, secret, sel.status.get("weights"))
    weights_phase = weights.phase if weights is not None else None
    if weights is not None and weights_phase == WeightsPhase.FAILED:
        phase = Phase.FAILED
        why = weights.message or "unknown"
        message = say(Reason.WEIGHTS_FAILED, source=option.weights, why=why)
        ready = ConditionValue.of(ConditionType.READY, False, Reason.WEIGHTS_FAILED, message)
    elif state == RuntimeState.FAILED:
        phase = Phase.FAILED
        message = failed_to_load(str(runtime.get("reason") or ""))  # the pod's reason, once
        ready = ConditionValue.of(ConditionType.READY, False, Reason.LOAD_FAILED, message)
    elif state == RuntimeState.READY and pod_ready:
        phase = Phase.CPU_FALLBACK if fallback else Phase.READY
        message = place.reason if fallback else say(Reason.LOADED, model=spec.model, device=device)
        if runtime.get("simulatedGpu"):
            message += f" (node {target.node} has a simulated GPU: the model runs on the CPU)"
        if measured is None:
            message += f" ({NOT_MEASURED})"
        ready = ConditionValue.of(ConditionType.READY, True, Reason.LOADED, message)
    elif config_error is not None:  # e.g. a Secret or ConfigMap it names does not exist
        phase, message = Phase.PENDING, say(Reason.POD_CONFIG_ERROR, pod=name, why=config_error)
        ready = ConditionValue.of(ConditionType.READY, False, Reason.POD_CONFIG_ERROR, message)
    elif weights is not None and weights_phase == WeightsPhase.FETCHING:
        phase = Phase.LOADING
        said = say(Reason.WEIGHTS_FETCHING, pod=name, source=option.weights)
        message = f"{said}: {progress_text(weights)}"
        ready = ConditionValue.of(ConditionType.READY, False, Reason.WEIGHTS_FETCHING, said)
    elif existing is not None and existing.get("spec", {}).get("nodeName"):
        phase, message = Phase.LOADING, say(Reason.LOADING, pod=name, model_id=option.model_id)
        ready = ConditionValue.of(ConditionType.READY, False, Reason.LOADING, message)
    else:
        phase, message = Phase.SCHEDULING, say(Reason.POD_SCHEDULING, pod=name)
        ready = ConditionValue.of(ConditionType.READY, False, Reason.POD_SCHEDULING, message)
    status = base.model_copy(
        update={
            "phase": phase,
            "message": message,
            "node": target.node,
            "planned_gpu_index": target.gpu_index,
            "gpu_index": _visible_gpu(device) if current else None,
            "pod": name,
            "device": device,
            "measured_memory_gb": measured,
            "measured_memory": None if measured is None else format_size(measured),
            "load_time_seconds": load_time,
            "weights": weights,
        }
    )
    if current and runtime.get("lastUsed"):
        status = status.model_copy(update={"last_used": runtime["lastUsed"]})
    return Decided(status, scheduled, ready, pod, create, frozenset(keep))


def _visible_gpu(device: str) -> int | None:
    """The GPU index the pod reports using ("cuda:N" -> N); None on the CPU."""
    if not device.startswith("cuda"):
        return None
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


def last_switch(sel: Selection, d: Decided, own_pods: Sequence[Raw], now: datetime) -> Decided:
    """`d` with status.lastSwitch: the stored record and what this pass saw (domain/switch.py)."""
    status = d.status
    name = status.pod
    pod = next((p for p in own_pods if p["metadata"]["name"] == name), None) if name else None
    live = pod is not None and not pod["metadata"].get("deletionTimestamp")
    runtime = sel.status.get("runtime") or {}
    pod_phases: list[PhaseStamp] = []
    if live and runtime.get("pod") == name and runtime.get("modelId") == status.model_id:
        pod_phases = _parsed(PhaseStamp, runtime.get("phases") or [])
    ended = {
        Phase.READY: SwitchPhase.READY,
        Phase.CPU_FALLBACK: SwitchPhase.READY,
        Phase.FAILED: SwitchPhase.FAILED,
    }.get(Phase(status.phase))
    stored = _parsed(LastSwitch, [sel.status["lastSwitch"]] if sel.status.get("lastSwitch") else [])
    record = next_switch(
        stored[0] if stored else None,
        model=sel.spec.model if sel.spec is not None and sel.spec.model else None,
        status_model=sel.status.get("model"),
        bound=live and pod is not None and bool((pod.get("spec") or {}).get("nodeName")),
        pod_phases=pod_phases,
        ended=ended,
        now=now,
    )
    return replace(d, status=status.model_copy(update={"last_switch": record}))


def _parsed(kind: type[_Stored], items: Sequence[Any]) -> list[_Stored]:
    """The items that parse as `kind` (a hand-edited status is not the operator's to fail on)."""
    out = []
    for item in items:
        try:
            out.append(kind.model_validate(item))
        except ValidationError:
            continue
    return out


def quota_problem(message: str) -> Problem:
    return Problem(Phase.UNSCHEDULABLE, Reason.QUOTA_EXCEEDED, message)


def pod_refused(d: Decided, reason: str, message: str) -> Decided:
    """The API server refused the pod (a ResourceQuota, admission): Scheduled says so."""
    why = say(Reason.POD_REFUSED, pod=d.status.pod, reason=reason, why=message)
    return replace(
        d,
        status=d.status.model_copy(update={"phase": Phase.PENDING, "message": why}),
        scheduled=ConditionValue.of(ConditionType.SCHEDULED, False, Reason.POD_REFUSED, why),
    )


def scheduler_refused(sel: Selection, d: Decided, refused: Refusals) -> Decided:
    """The scheduler refused this selection's pod: its words go into the status.

    The planner has already re-planned the selection away from that node
    (`Demand.excluded_nodes`). When there is nowhere else, the refused pod
    stays: it is pinned to its node and the scheduler binds it once there is room.
    """
    if refused.message is None or refused.pod is None:
        return d
    said = f"the scheduler could not place pod {refused.pod}: {refused.message}"
    message = f"{d.status.message}; {said}" if d.status.message else said
    s = d.scheduled
    scheduled = ConditionValue.of(
        s.type, s.status == ConditionStatus.TRUE, s.reason, f"{s.message}; {said}"
    )
    keep = d.keep
    if d.status.phase in (Phase.UNSCHEDULABLE, Phase.EVICTED):
        keep = keep | {(sel.namespace, refused.pod)}
    status = d.status.model_copy(update={"message": message})
    return replace(d, status=status, scheduled=scheduled, keep=keep)


def degraded_condition(
    r: Resolved, place: placement.Placement | None, result: placement.Plan
) -> ConditionValue | None:
    """Degraded=True while on the CPU for want of GPU memory (`fovea.domain.degraded`)."""
    spec, option = r.sel.spec, r.option
    if place is None or place.outcome != Outcome.CPU or spec is None or option is None:
        return None
    if r.problem is not None or spec.device_policy == DevicePolicy.CPU:
        return None  # on the CPU by choice: not degraded
    wanted = degraded.wanted_gpu(result.gpus, option.vram_gib)
    return degraded.fallback(place.reason, wanted, option.vram_gib)


def finish(
    sel: Selection, d: Decided, move: placement.Move | None, stamp: str
) -> SelectionDecision:
    """Set the conditions on the status, compare with what is stored, and tell the transitions."""
    previous = list(sel.status.get("conditions") or [])
    conditions = [
        Condition.model_validate(set_condition(previous, v, now=stamp, generation=sel.generation))
        for v in (d.scheduled, d.ready, *degraded.after(previous, d.degraded))
    ]
    status = d.status.model_copy(update={"conditions": conditions})
    # Only what this pass changes: a field it leaves as read is not written back, so a
    # write made since the snapshot (someone's lastUsed, say) is not reverted by a stale one.
    patch = {
        k: v
        for k, v in status_patch(status).items()
        if _as_stored(sel.status.get(k)) != _as_stored(v)
    }
    events = selection_events(sel, d, move, previous)
    key = sel.key
    if not patch:
        return SelectionDecision(key, d.desired_pod, d.create_pod, d.keep, status, None, ())
    return SelectionDecision(key, d.desired_pod, d.create_pod, d.keep, status, patch, events)


def _as_stored(value: Any) -> Any:
    """A value as the API server keeps it after a merge patch: nested nulls are removed."""
    if isinstance(value, dict):
        return {k: _as_stored(v) for k, v in value.items() if v is not None}
    return value


def status_patch(status: SelectionStatus) -> dict[str, Any]:
    """The merge patch of the operator's fields (null removes a field; runtime is the pod's)."""
    return status.model_dump(by_alias=True, mode="json", exclude={"runtime"})


def catalog_decision(
    cat: Catalog, spec: CatalogSpec | None, errors: list[str] | None, stamp: str
) -> CatalogDecision:
    previous = list(cat.status.get("conditions") or [])
    if spec is not None:
        options = {task: sorted(t.options) for task, t in sorted(spec.tasks.items())}
        count = sum(len(o) for o in options.values())
        msg = f"{len(options)} tasks, {count} options"
        value = ConditionValue.of(ConditionType.ACCEPTED, True, Reason.VALID, msg)
        problems: list[str] = []
    else:
        options, problems = {}, list(errors or ["does not parse"])
        msg = f"{len(problems)} problem(s): {problems[0]}"
        value = ConditionValue.of(ConditionType.ACCEPTED, False, Reason.INVALID, msg)
    status = CatalogStatus(
        observed_generation=cat.generation,
        conditions=[
            Condition.model_validate(
                set_condition(previous, value, now=stamp, generation=cat.generation)
            )
        ],
        options=options,
        problems=problems,
    )
    patch = status.model_dump(by_alias=True, mode="json")
    if {k: cat.status.get(k) for k in patch} == patch:
        return CatalogDecision(cat.key, status, None, ())
    events: tuple[Event, ...] = ()
    if transitioned(previous, value) and value.status != ConditionStatus.TRUE:
        events = (
            Event(
                cat.namespace,
                cat.name,
                cat.uid,
                EventType.WARNING,
                Reason.INVALID,
                truncate(msg, MAX_EVENT_MESSAGE),
                kind=c.CATALOG_KIND,
            ),
        )
    return CatalogDecision(cat.key, status, patch, events)
