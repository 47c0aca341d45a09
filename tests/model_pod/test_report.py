"""Status reporting: the patch's shape, what is retried, and a reporter that never gives up."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.domain.resources import RuntimeReport
from fovea.model_pod.report import (
    Reporter,
    backoff_seconds,
    is_retryable,
    rfc3339,
    runtime_patch,
    selection_patcher,
)
from waiting import eventually


def test_patch_sets_every_field_and_nulls_what_is_gone() -> None:
    report = RuntimeReport(
        state="Ready",
        model_id="m",
        device="cpu",
        measured_memory_gb=0.5,
        memory_breakdown={"parametersGb": 0.5},
    )
    body = runtime_patch(report, stale_breakdown_keys=["reservedGb"])
    runtime = body["status"]["runtime"]
    assert set(body) == {"status"} and set(body["status"]) == {"runtime"}
    assert runtime["state"] == "Ready"
    assert runtime["measuredMemoryGb"] == 0.5
    assert runtime["reason"] is None  # clears a Failed report's reason
    assert runtime["memoryBreakdown"] == {"reservedGb": None, "parametersGb": 0.5}


def test_rfc3339() -> None:
    stamp = rfc3339()
    assert len(stamp) == 20 and stamp.endswith("Z") and stamp[10] == "T"


@pytest.mark.parametrize("status", [409, 429, 500, 503, 0])
def test_transient_api_errors_are_retried(status: int) -> None:
    assert is_retryable(ApiException(status=status))


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_permanent_api_errors_are_not(status: int) -> None:
    assert not is_retryable(ApiException(status=status))


def test_connection_errors_are_retried() -> None:
    assert is_retryable(urllib3.exceptions.MaxRetryError(None, "/x", "refused"))  # type: ignore[arg-type]
    assert is_retryable(urllib3.exceptions.ProtocolError("reset"))
    assert is_retryable(ConnectionRefusedError())
    assert not is_retryable(ValueError("bug"))


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff_seconds(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert backoff_seconds(10_000) == 15


class FlakySend:
    """Fails with the given errors first, then records what it receives."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = list(errors)
        self.bodies: list[dict[str, Any]] = []
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.calls += 1
            if self.errors:
                raise self.errors.pop(0)
            self.bodies.append(body)


def fast_reporter(send: FlakySend, **kwargs: Any) -> Reporter:
    reporter = Reporter(send, backoff=lambda attempt: 0.01, **kwargs)
    reporter.start()
    return reporter


def test_rides_out_conflicts_throttling_and_outages() -> None:
    send = FlakySend(
        [
            ApiException(status=409, reason="Conflict"),
            ApiException(status=500, reason="Internal"),
            ApiException(status=429, reason="Too Many Requests"),
            urllib3.exceptions.ProtocolError("connection reset"),
            ConnectionRefusedError(),
        ]
    )
    reporter = fast_reporter(send)
    reporter.set(RuntimeReport(state="Loading"))
    assert reporter.wait_delivered(5)
    assert send.calls == 6 and reporter.failures == 5
    assert send.bodies[-1]["status"]["runtime"]["state"] == "Loading"
    reporter.stop()


def test_a_refused_write_is_tried_again_later_and_never_raises() -> None:
    send = FlakySend([ApiException(status=403, reason="Forbidden")])
    reporter = fast_reporter(send, heartbeat_seconds=0.2)
    reporter.set(RuntimeReport(state="Loading"))
    assert reporter.wait_delivered(5)
    assert reporter.failures == 1
    reporter.stop()


def test_latest_state_wins_over_unsent_ones() -> None:
    gate, sending = threading.Event(), threading.Event()
    bodies: list[dict[str, Any]] = []

    def slow_send(body: dict[str, Any]) -> None:
        sending.set()
        gate.wait(5)
        bodies.append(body)

    reporter = Reporter(slow_send)
    reporter.start()
    reporter.set(RuntimeReport(state="Loading"))
    assert eventually(sending.is_set, 5)  # the thread is now blocked sending Loading
    reporter.set(RuntimeReport(state="Failed", reason="first"))
    reporter.set(RuntimeReport(state="Ready", measured_memory_gb=1.0))
    gate.set()
    assert reporter.wait_delivered(5)
    states = [b["status"]["runtime"]["state"] for b in bodies]
    assert states == ["Loading", "Ready"]  # "Failed" was superseded before it was sent
    reporter.stop()


def test_last_use_is_flushed_soon_and_kept_across_states() -> None:
    send = FlakySend([])
    reporter = fast_reporter(send, last_used_flush_seconds=0.05)
    reporter.set(RuntimeReport(state="Ready"))
    assert reporter.wait_delivered(5)
    reporter.touch()
    assert reporter.wait_delivered(5)
    last_used = send.bodies[-1]["status"]["runtime"]["lastUsed"]
    assert last_used is not None and last_used.endswith("Z")
    reporter.set(RuntimeReport(state="Failed", reason="engine died"))
    assert reporter.wait_delivered(5)
    assert send.bodies[-1]["status"]["runtime"]["lastUsed"] == last_used
    reporter.stop()


def test_heartbeat_repeats_the_report() -> None:
    send = FlakySend([])
    reporter = fast_reporter(send, heartbeat_seconds=0.1)
    reporter.set(RuntimeReport(state="Ready"))
    assert eventually(lambda: len(send.bodies) >= 3, 5)  # the first, then two heartbeats
    reporter.stop()
    assert all(b["status"]["runtime"]["heartbeat"] for b in send.bodies)


def test_an_unreachable_api_server_is_survived_for_real() -> None:
    """The real client against a port where nothing listens: real connection errors."""
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    configuration.retries = False
    send = selection_patcher(client.ApiClient(configuration), "ns", "object-detection")
    errors: list[BaseException] = []

    def recording_send(body: dict[str, Any]) -> None:
        try:
            send(body)
        except Exception as exc:
            errors.append(exc)
            raise

    reporter = Reporter(recording_send, backoff=lambda attempt: 0.05)
    reporter.start()
    reporter.set(RuntimeReport(state="Loading"))
    assert not reporter.wait_delivered(0.5)
    reporter.stop(flush_timeout=0.1)
    assert len(errors) >= 2  # it kept trying
    assert all(is_retryable(exc) for exc in errors), errors
