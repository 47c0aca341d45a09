"""status.lastSwitch on the real local cluster: real operator, real model pods, real API.

The test's own clock is the independent observer: it notes when it sent the select
and when `/select?wait=` answered Ready, and the phases the operator and the model
pod stamped must fall between the two and add up to nearly all of it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from api_server import ApiServer
from kube_testing import Kube, mlp_option

pytestmark = pytest.mark.integration

# A cold switch: a new process (node agent), torch imported, a model built, warmed.
COLD = ["Planned", "PodBound", "ProcessStarted", "RuntimeReady", "Loaded", "Warmed", "Ready"]
# What lies outside the phases but inside the observer's window: the API's patch and the
# operator's watch before Planned; the status write, the API's watch and the answer after
# Ready. At most this much, and never more than half of the switch.
SLACK_SECONDS = 1.0
MS = 0.001  # the stamps' precision
# Planned is the clock of the pass that saw the new model, read just before the pass reads
# its (watch-fed, in-memory) snapshot: a pass that began a moment before the select can
# see it.
PASS_START_SECONDS = 0.1


CATALOG = {"tasks": {"det": {"options": {"ten": mlp_option(10), "five": mlp_option(5)}}}}


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def _select(api: ApiServer, model: str) -> tuple[float, float]:
    """Select and wait for Ready; (sent, answered) on the test's wall clock."""
    sent = time.time()
    resp = api.http.post(f"/api/models/select?task_type=det&model_name={model}&wait=120")
    answered = time.time()
    assert resp.status_code == 200, resp.text
    return sent, answered


def test_a_switch_records_its_phases_and_its_total_agrees_with_the_observers_clock(
    kube: Kube, operator: None, api: ApiServer
) -> None:
    kube.apply_catalog(CATALOG)
    _select(api, "ten")
    first = kube.status("det")["lastSwitch"]
    assert (first["model"], "from" in first) == ("ten", False)  # first use: from nothing
    assert [p["name"] for p in first["phases"]] == COLD

    sent, answered = _select(api, "five")
    status = kube.status("det")
    record = status["lastSwitch"]
    assert (record["model"], record["from"]) == ("five", "ten")
    names = [p["name"] for p in record["phases"]]
    assert names == COLD, names
    times = [_at(p["at"]) for p in record["phases"]]
    assert times == sorted(times)
    # Every step lies inside the observer's window: planned after the select was sent,
    # Ready decided before the wait saw it.
    assert sent - PASS_START_SECONDS <= times[0], (sent, times)
    assert times[-1] <= answered + MS, (times, answered)
    total = record["totalSeconds"]
    assert total == pytest.approx(times[-1] - times[0], abs=MS)
    observed = answered - sent
    slack = min(SLACK_SECONDS, observed / 2)
    assert observed - slack <= total <= observed + PASS_START_SECONDS, (observed, total)
    # The pod's own stamps agree with its own measurement of the load.
    by_name = dict(zip(names, times, strict=True))
    assert by_name["Loaded"] - by_name["RuntimeReady"] >= status["loadTimeSeconds"] - 2 * MS
    # A tiny model warms up within the stamps' millisecond: Warmed is never before Loaded.
    assert by_name["Warmed"] >= by_name["Loaded"]

    # `fovea-models describe` prints them, the seconds of each step beside it.
    result = subprocess.run(
        [sys.executable, "-P", "-m", "fovea.cli", "describe", "det", "--api", api.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"Last switch: ten -> five: {total:.3f}s to Ready" in result.stdout
    lines = result.stdout.split("Last switch:")[1].splitlines()
    for name in COLD:
        assert any(line.split()[:1] == [name] for line in lines), (name, result.stdout)
