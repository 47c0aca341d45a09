"""The planning loop survives its own bugs, and liveness fails when no pass completes."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import kopf
import pytest

from fovea.operator.handlers import planner_alive
from fovea.operator.loop import Planner
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Actions, World
from fovea.operator.settings import OperatorSettings
from waiting import eventually_async


class HeldLease:
    def held(self, now: datetime) -> bool:
        return True

    def try_acquire(self, now: datetime) -> bool:
        return True


class BuggyCluster:
    """Its first snapshots raise an unexpected error (a bug), then it reads an empty world."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.snapshots = 0

    def next_retry_in(self) -> float | None:
        return None

    def snapshot(self, now: datetime) -> World:
        self.snapshots += 1
        if self.snapshots <= self.failures:
            raise KeyError("a bug in the planner")
        return World({}, [], [], [], now)

    def apply(self, actions: Actions) -> Any:
        class Applied:
            changed = False

        return Applied()


def planner(cluster: BuggyCluster, resync: float = 0.05) -> Planner:
    settings = OperatorSettings(resync_seconds=resync, debounce_seconds=0.0)
    return Planner(
        cluster=cluster,  # type: ignore[arg-type]
        lease=HeldLease(),  # type: ignore[arg-type]
        settings=settings,
        pod_settings=PodSettings(),
    )


def test_an_unexpected_error_is_logged_with_its_traceback_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = BuggyCluster(failures=2)
    p = planner(cluster)

    async def run() -> None:
        task = asyncio.create_task(p.run())
        p.wake.set()
        await eventually_async(lambda: p.passes >= 1 or task.done(), 30)
        assert not task.done(), task
        task.cancel()

    with caplog.at_level(logging.ERROR, logger="fovea.operator.loop"):
        asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert cluster.snapshots >= 3 and p.passes >= 1
    failures = [r for r in caplog.records if "unexpectedly" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)
    assert "KeyError" in caplog.text


def test_liveness_fails_when_no_pass_completed_within_three_resyncs() -> None:
    p = planner(BuggyCluster(failures=0), resync=10.0)
    assert p.stale(now=p.last_pass + 29.0) is None
    assert "no planning pass completed" in (p.stale(now=p.last_pass + 31.0) or "")
    memo = kopf.Memo(planner=p)
    assert planner_alive(memo=memo) == "planning"
    p.last_pass -= 31.0
    with pytest.raises(kopf.PermanentError, match="no planning pass"):
        planner_alive(memo=memo)


class LostLease:
    """Held when the pass begins, lost by the time its plan is ready (a standby took it)."""

    def __init__(self) -> None:
        self.asked = 0

    def held(self, now: datetime) -> bool:
        self.asked += 1
        return self.asked == 1

    def try_acquire(self, now: datetime) -> bool:
        return False


def test_a_pass_that_lost_the_lease_while_planning_writes_nothing() -> None:
    cluster = BuggyCluster(failures=0)
    applied: list[Actions] = []
    cluster.apply = applied.append  # type: ignore[method-assign]
    p = planner(cluster)
    p.lease = LostLease()  # type: ignore[assignment]
    assert p.run_once() is True  # look again: the next pass finds it is no longer the leader
    assert cluster.snapshots == 1 and applied == []
    assert p.run_once() is False and cluster.snapshots == 1


class SlowPassLease:
    """Held when the pass begins, lapsed by the time its plan is ready, still this replica's."""

    def __init__(self) -> None:
        self.asked = 0
        self.renewals = 0

    def held(self, now: datetime) -> bool:
        self.asked += 1
        return self.asked == 1

    def try_acquire(self, now: datetime) -> bool:
        self.renewals += 1
        return True


def test_a_pass_slower_than_the_renewal_renews_and_writes_its_plan() -> None:
    cluster = BuggyCluster(failures=0)
    applied: list[Actions] = []

    def apply(actions: Actions) -> Any:
        applied.append(actions)
        return type("Applied", (), {"changed": False})()

    cluster.apply = apply  # type: ignore[method-assign]
    p = planner(cluster)
    lease = SlowPassLease()
    p.lease = lease  # type: ignore[assignment]
    assert p.run_once() is False
    assert cluster.snapshots == 1 and len(applied) == 1 and lease.renewals == 1
