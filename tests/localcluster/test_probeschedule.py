"""Probe timing and verdicts for a running container (pure; time is passed in)."""

from __future__ import annotations

from typing import Any

from fovea.localcluster.podspec import Probe
from fovea.localcluster.probeschedule import (
    FAST_PROBE_S,
    LIVENESS,
    READINESS,
    STARTUP,
    ProbeSchedule,
)


def http(**timing: Any) -> Probe:
    return Probe(kind="http", **timing)


def test_no_probes_means_started_and_ready_at_once() -> None:
    schedule = ProbeSchedule(0.0)
    assert schedule.started and schedule.ready
    assert schedule.next_due() is None and schedule.due(100.0) == []


def test_readiness_is_probed_fast_until_first_ready_then_by_period() -> None:
    schedule = ProbeSchedule(0.0, readiness=http(period_s=10))
    assert not schedule.ready and schedule.due(0.0) == [READINESS]
    assert not schedule.record(READINESS, ok=False, now=0.0).changed
    assert schedule.next_due() == FAST_PROBE_S
    assert schedule.record(READINESS, ok=True, now=0.2).changed
    assert schedule.ready
    assert schedule.next_due() == 0.2 + 10


def test_readiness_thresholds() -> None:
    schedule = ProbeSchedule(0.0, readiness=http(success_threshold=2, failure_threshold=2))
    schedule.record(READINESS, ok=True, now=0.0)
    assert not schedule.ready
    schedule.record(READINESS, ok=True, now=0.2)
    assert schedule.ready
    assert not schedule.record(READINESS, ok=False, now=10.0).changed
    assert schedule.record(READINESS, ok=False, now=20.0).changed
    assert not schedule.ready


def test_initial_delay_is_honoured() -> None:
    schedule = ProbeSchedule(100.0, readiness=http(initial_delay_s=5))
    assert schedule.due(104.9) == []
    assert schedule.due(105.0) == [READINESS]


def test_startup_gates_the_other_probes() -> None:
    schedule = ProbeSchedule(
        0.0,
        startup=http(period_s=1, failure_threshold=5),
        readiness=http(),
        liveness=http(),
    )
    assert not schedule.started and schedule.due(0.0) == [STARTUP]
    schedule.record(STARTUP, ok=False, now=0.0)
    assert schedule.next_due() == FAST_PROBE_S
    outcome = schedule.record(STARTUP, ok=True, now=1.0)
    assert outcome.changed and schedule.started and not schedule.ready
    assert sorted(schedule.due(1.0)) == [LIVENESS, READINESS]


def test_startup_fails_after_its_whole_budget_only() -> None:
    schedule = ProbeSchedule(0.0, startup=http(period_s=1, failure_threshold=3))
    for now in (0.0, 0.2, 0.4, 2.9):  # many fast failures, still within 3 s
        assert schedule.record(STARTUP, ok=False, now=now).kill is None
    outcome = schedule.record(STARTUP, ok=False, now=3.0)
    assert outcome.kill is not None and "Startup probe failed" in outcome.kill


def test_liveness_kills_after_consecutive_failures() -> None:
    schedule = ProbeSchedule(0.0, liveness=http(period_s=1, failure_threshold=2))
    assert schedule.record(LIVENESS, ok=False, now=0.0).kill is None
    assert schedule.record(LIVENESS, ok=True, now=1.0).kill is None
    assert schedule.record(LIVENESS, ok=False, now=2.0).kill is None
    outcome = schedule.record(LIVENESS, ok=False, now=3.0)
    assert outcome.kill is not None and "Liveness" in outcome.kill
    assert schedule.next_due() == 4.0
