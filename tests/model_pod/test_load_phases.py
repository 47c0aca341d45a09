"""The steps of a load the pod reports (status.runtime.phases), on its own clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psutil

from fovea.domain.conditions import SwitchPhase as S
from fovea.domain.switch import parse, stamp
from fovea.model_pod.adapters.adapter_torch import TorchAdapter
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import FAILED, READY, ModelService


def test_a_load_reports_its_steps_in_time_order(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("pytorch", "mlp-tiny")
    service = ModelService(identity, TorchAdapter(identity.spec), reporter=None)
    before = parse(stamp(datetime.now(UTC)))  # as precise as the stamps
    service.load()
    assert service.state == READY, service.reason
    steps = service.report.phases
    assert [p.name for p in steps] == [S.PROCESS_STARTED, S.RUNTIME_READY, S.LOADED, S.WARMED]
    times = [parse(p.at) for p in steps]
    assert times == sorted(times)
    # ProcessStarted is the OS's start of this process, long before the load began.
    started = datetime.fromtimestamp(psutil.Process().create_time(), UTC)
    assert abs((times[0] - started).total_seconds()) < 0.002
    assert times[0] < before <= times[1]
    # Loaded -> Warmed is the warm-up the report also gives in seconds.
    warm = (times[3] - times[2]).total_seconds()
    assert warm >= service.report.memory_breakdown["warmupSeconds"] - 0.002


def test_a_failed_load_reports_the_steps_it_got_through(
    make_identity: Callable[..., Identity],
) -> None:
    identity = make_identity("pytorch", "no-such-architecture")
    service = ModelService(identity, TorchAdapter(identity.spec), reporter=None)
    service.load()
    assert service.state == FAILED
    assert [p.name for p in service.report.phases] == [S.PROCESS_STARTED, S.RUNTIME_READY]
