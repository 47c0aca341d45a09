"""status.lastSwitch, assembled pass after pass from the operator's and the pod's stamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fovea.domain.conditions import SwitchPhase as S
from fovea.domain.resources import LastSwitch, PhaseStamp, SelectionStatus
from fovea.domain.switch import next_switch, parse, seconds_between, stamp

T0 = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def pod(*steps: tuple[S, float]) -> list[PhaseStamp]:
    return [PhaseStamp(name=name, at=stamp(at(t))) for name, t in steps]


def names(record: LastSwitch | None) -> list[str]:
    assert record is not None
    return [str(p.name) for p in record.phases]


def step(previous: LastSwitch | None, now: float, **seen: object) -> LastSwitch | None:
    args: dict[str, object] = {
        "model": "b",
        "status_model": "a",
        "bound": False,
        "pod_phases": [],
        "ended": None,
    }
    args.update(seen)
    return next_switch(previous, now=at(now), **args)  # type: ignore[arg-type]


def test_stamp_has_milliseconds_and_parses_back() -> None:
    moment = datetime(2026, 1, 31, 12, 0, 1, 234567, tzinfo=UTC)
    assert stamp(moment) == "2026-01-31T12:00:01.234Z"
    assert parse(stamp(moment)) == moment.replace(microsecond=234000)
    assert parse("2026-01-31T12:00:01Z") == moment.replace(microsecond=0)


def test_a_cold_switch_pass_by_pass() -> None:
    record = step(None, 0.0)
    assert record is not None
    assert (record.model, record.from_model, names(record)) == ("b", "a", ["Planned"])
    assert record.total_seconds is None
    record = step(record, 0.1, bound=True)
    assert names(record) == ["Planned", "PodBound"]
    reported = pod(
        (S.PROCESS_STARTED, 0.15),
        (S.RUNTIME_READY, 1.2),
        (S.LOADED, 1.5),
        (S.WARMED, 2.0),
    )
    record = step(record, 1.6, bound=True, pod_phases=reported[:3])
    assert names(record) == ["Planned", "PodBound", "ProcessStarted", "RuntimeReady", "Loaded"]
    record = step(record, 2.3, bound=True, pod_phases=reported, ended=S.READY)
    assert record is not None
    assert names(record)[-2:] == ["Warmed", "Ready"]
    assert record.phases[-1].at == stamp(at(2.3))
    assert record.total_seconds == 2.3
    # Done: later passes (the pod's heartbeats, another Ready pass) change nothing.
    assert step(record, 9.0, bound=True, pod_phases=reported, ended=S.READY) == record


def test_the_binding_is_never_later_than_the_pods_own_start() -> None:
    """A pass that sees the pod bound only once it already runs: bound at its start."""
    record = step(None, 0.0)
    reported = pod((S.PROCESS_STARTED, 0.4), (S.RUNTIME_READY, 0.9))
    record = step(record, 1.0, bound=True, pod_phases=reported)
    assert record is not None
    assert [(str(p.name), p.at) for p in record.phases[:3]] == [
        ("Planned", stamp(at(0))),
        ("PodBound", stamp(at(0.4))),
        ("ProcessStarted", stamp(at(0.4))),
    ]


def test_a_binding_seen_late_moves_back_to_the_process_start_reported_later() -> None:
    """The pass saw the pod bound after its process had started, before its first report."""
    record = step(step(None, 0.0), 0.3, bound=True)
    reported = pod((S.PROCESS_STARTED, 0.1), (S.RUNTIME_READY, 0.9))
    record = step(record, 1.0, bound=True, pod_phases=reported)
    assert names(record)[:3] == ["Planned", "PodBound", "ProcessStarted"]
    assert record is not None and record.phases[1].at == stamp(at(0.1))


def test_steps_before_the_switch_are_not_its_own() -> None:
    """A runtime already running (or a model loaded before) took no time of this switch."""
    record = step(None, 10.0)
    earlier = pod((S.PROCESS_STARTED, 1.0), (S.RUNTIME_READY, 2.0), (S.LOADED, 10.2))
    record = step(record, 10.5, bound=True, pod_phases=earlier, ended=S.READY)
    assert names(record) == ["Planned", "PodBound", "Loaded", "Ready"]
    assert record is not None and record.total_seconds == 0.5


def test_ready_is_not_stamped_before_what_the_pod_reported() -> None:
    """The pass's time is read before its snapshot; Ready cannot precede the pod's Warmed."""
    record = step(None, 0.0)
    reported = pod((S.LOADED, 1.0), (S.WARMED, 2.05))
    record = step(record, 2.0, bound=True, pod_phases=reported, ended=S.READY)
    assert record is not None
    assert record.phases[-1].at == stamp(at(2.05))
    assert record.total_seconds == 2.05


def test_a_failed_switch_ends_failed() -> None:
    record = step(step(None, 0.0), 3.0, bound=True, ended=S.FAILED)
    assert names(record) == ["Planned", "PodBound", "Failed"]
    assert record is not None and record.total_seconds == 3.0


def test_a_new_model_mid_switch_starts_a_new_record_from_the_one_under_way() -> None:
    record = step(None, 0.0)
    record = step(record, 1.0, model="c")
    assert record is not None
    assert (record.model, record.from_model, names(record)) == ("c", "b", ["Planned"])
    assert record.phases[0].at == stamp(at(1.0))


def test_a_warm_switch_the_pod_made_before_the_pass_begins_at_the_pods_first_step() -> None:
    """A warm pod follows its selection itself: by the pass that sees the change it may
    be Ready already. The switch is dated from its first step, not from that pass."""
    done = step(step(None, 0.0), 2.0, bound=True, ended=S.READY)  # a -> b, ended at 2.0
    reported = pod((S.PROCESS_STARTED, 0.5), (S.RUNTIME_READY, 5.1), (S.LOADED, 5.3))
    back = step(done, 5.6, model="a", status_model="b", bound=True, pod_phases=reported)
    assert back is not None
    assert back.phases[0].at == stamp(at(5.1))  # the old process start is not this switch's
    assert names(back) == ["Planned", "PodBound", "RuntimeReady", "Loaded"]  # bound already
    back = step(
        back, 5.7, model="a", status_model="b", bound=True, pod_phases=reported, ended=S.READY
    )
    assert back is not None and back.total_seconds == 0.6
    # Its report read only by a later pass than the one that planned it: the same start.
    planned = step(done, 5.6, model="a", status_model="b", bound=True)
    late = step(
        planned, 5.8, model="a", status_model="b", bound=True, pod_phases=reported, ended=S.READY
    )
    assert late is not None and late.phases[0].at == stamp(at(5.1))
    assert late.total_seconds == 0.7 and "ProcessStarted" not in names(late)


def test_first_use_has_no_from() -> None:
    record = step(None, 0.0, status_model=None)
    assert record is not None and record.from_model is None


def test_no_record_is_made_up() -> None:
    """An operator upgraded under a running model did not see its switch; no model, none."""
    assert step(None, 5.0, model="a", status_model="a", ended=S.READY) is None
    assert step(None, 5.0, model=None) is None
    kept = step(None, 0.0)
    assert step(kept, 5.0, model=None) == kept


def test_the_status_field_is_camel_case_with_from() -> None:
    record = step(step(None, 0.0), 1.0, ended=S.READY)
    status = SelectionStatus(last_switch=record).model_dump(by_alias=True, mode="json")
    assert status["lastSwitch"] == {
        "model": "b",
        "from": "a",
        "phases": [
            {"name": "Planned", "at": stamp(at(0))},
            {"name": "Ready", "at": stamp(at(1))},
        ],
        "totalSeconds": 1.0,
        "since": None,  # a first switch: no previous one
    }
    assert LastSwitch.model_validate(status["lastSwitch"]) == record


def test_seconds_between_steps() -> None:
    steps = seconds_between(pod((S.PLANNED, 0.0), (S.POD_BOUND, 0.25), (S.READY, 1.0)))
    assert steps == [
        ("Planned", stamp(at(0)), 0.0),
        ("PodBound", stamp(at(0.25)), 0.25),
        ("Ready", stamp(at(1)), 0.75),
    ]
