"""The steps of a load the pod reports (status.runtime.phases), on its own clock."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from fovea.domain.conditions import SwitchPhase as S
from fovea.domain.switch import parse, stamp
from fovea.model_pod.adapters.adapter_torch import TorchAdapter
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import FAILED, READY, ModelService, process_started_at


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
    assert times[0] == parse(stamp(process_started_at()))
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


def test_the_process_start_is_read_to_the_kernels_tick() -> None:
    """Not psutil's create_time: Linux gives it the boot time in whole seconds (up to 1 s early)."""
    code = (
        "import time; t = time.time(); "
        "from fovea.model_pod.lifecycle import process_started_at; "
        "print(process_started_at().timestamp(), t)"
    )
    launched = time.time()
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    started, first_line = map(float, out.stdout.split())
    tick = 0.011  # a clock tick (10 ms) and the stamp's rounding
    assert launched - tick <= started <= first_line, (launched, started, first_line)
