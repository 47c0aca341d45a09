"""The phases of a switch (status.lastSwitch): where the time from select to Ready went.

A switch begins when the operator's pass first sees a selection name a model other
than the one its last switch (or its status) was about, and ends when a pass sees it
Ready or Failed. The operator stamps what it sees (Planned, PodBound, Ready, Failed);
the model pod stamps its own steps on its clock (status.runtime.phases:
ProcessStarted, RuntimeReady, WeightsReady, Loaded, Warmed). `next_switch` merges
the two, pass after pass, into one record in time order; the time is an input.

Steps the pod took before the switch was planned (a runtime that was already
running, a model loaded earlier) are not this switch's and are left out: a switch
that needed no process start simply has no ProcessStarted. A warm pod (model_pod/
warm.py) acts on its selection itself, often before the operator's pass sees the
change: its steps after the previous switch's last one date the switch's start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from fovea.domain.conditions import SwitchPhase
from fovea.domain.resources import LastSwitch, PhaseStamp

OPERATOR_PHASES = frozenset(
    {SwitchPhase.PLANNED, SwitchPhase.POD_BOUND, SwitchPhase.READY, SwitchPhase.FAILED}
)
ENDS = frozenset({SwitchPhase.READY, SwitchPhase.FAILED})
ORDER = {phase: n for n, phase in enumerate(SwitchPhase)}  # ties in time: the declared order


def stamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: 2026-01-31T12:00:00.123Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse(text: str) -> datetime:
    """A stamp back to an aware datetime (any RFC 3339 form Kubernetes writes)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def next_switch(
    previous: LastSwitch | None,
    *,
    model: str | None,
    status_model: str | None,
    bound: bool,
    pod_phases: Sequence[PhaseStamp],
    ended: SwitchPhase | None,
    now: datetime,
) -> LastSwitch | None:
    """The record after this pass.

    `model`: the option the spec selects; `status_model`: the one the stored status
    describes (what the switch is from). `bound`: the selection's desired pod is bound
    to a node. `pod_phases`: what that pod reports for this model (empty when the
    report is another pod's or another model's). `ended`: Ready or Failed when this
    pass decided so, else None. A selection with a model and a status about the same
    model but no record (an operator upgraded under a running model) starts none: its
    start was not seen.
    """
    if model is None:
        return previous
    record = previous
    if record is None or record.model != model:
        if record is None and status_model == model:
            return None
        from_model = record.model if record is not None else status_model
        since = None
        if record is not None and record.phases:
            since = stamp(max(parse(p.at) for p in record.phases))
        planned = PhaseStamp(name=SwitchPhase.PLANNED, at=stamp(now))
        record = LastSwitch(model=model, from_model=from_model, phases=[planned], since=since)
    if record.total_seconds is not None or any(p.name in ENDS for p in record.phases):
        return record  # done: later passes change nothing
    start = parse(record.phases[0].at)
    after = parse(record.since) if record.since is not None else start
    reported = [p for p in pod_phases if p.name not in OPERATOR_PHASES and _ours(p, start, after)]
    # A warm pod that acted before the pass saw the switch: the switch began at its first step.
    start = min([start, *(parse(p.at) for p in reported)])
    own = [
        PhaseStamp(name=p.name, at=stamp(start)) if p.name == SwitchPhase.PLANNED else p
        for p in record.phases
        if p.name in OPERATOR_PHASES - {SwitchPhase.POD_BOUND}
    ]
    seen = [parse(p.at) for p in record.phases if p.name == SwitchPhase.POD_BOUND]
    if bound and not seen:
        seen = [now]
    if seen:
        # When a pass first saw it, or earlier: a pod's process starts only once it is bound.
        bound_at = max(start, min([*seen, *(parse(p.at) for p in reported)]))
        own.append(PhaseStamp(name=SwitchPhase.POD_BOUND, at=stamp(bound_at)))
    phases = [*own, *reported]
    total = None
    if ended is not None:
        # Decided on what this pass read: not before anything the pod reported.
        end = parse(stamp(max([now, *(parse(p.at) for p in phases)])))
        phases.append(PhaseStamp(name=ended, at=stamp(end)))
        total = round((end - start).total_seconds(), 3)
    phases.sort(key=lambda p: (parse(p.at), ORDER[SwitchPhase(p.name)]))
    return LastSwitch(
        model=record.model,
        from_model=record.from_model,
        phases=phases,
        total_seconds=total,
        since=record.since,
    )


def _ours(step: PhaseStamp, start: datetime, after: datetime) -> bool:
    """A pod step is this switch's when it came at or after the switch was planned, or
    after the previous switch's last step (`since`)."""
    at = parse(step.at)
    return at >= start or at > after


def seconds_between(phases: Sequence[PhaseStamp]) -> list[tuple[str, str, float]]:
    """(name, at, seconds since the step before) for each step; the first counts 0."""
    out: list[tuple[str, str, float]] = []
    before: datetime | None = None
    for p in phases:
        at = parse(p.at)
        out.append((str(p.name), p.at, 0.0 if before is None else (at - before).total_seconds()))
        before = at
    return out
