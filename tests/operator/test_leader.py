"""The standby's judgement of the Lease: lapsed after a whole duration without a renewal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubernetes import client

from fovea.operator.leader import Lease, Observed


def test_a_record_seen_unchanged_for_a_whole_duration_has_lapsed() -> None:
    seen = Observed()
    assert not seen.expired("a", "t1", 1.5, now=100.0)  # first sight: the clock starts
    assert not seen.expired("a", "t1", 1.5, now=101.4)
    assert seen.expired("a", "t1", 1.5, now=101.5)


def test_a_renewal_restarts_the_clock_whatever_the_holders_clock_says() -> None:
    seen = Observed()
    seen.expired("a", "2020-01-01T00:00:00", 1.5, now=100.0)
    # The record's own time is years old (another node's clock): only its change counts.
    assert not seen.expired("a", "2020-01-01T00:00:01", 1.5, now=101.4)
    assert not seen.expired("a", "2020-01-01T00:00:01", 1.5, now=102.8)
    assert seen.expired("a", "2020-01-01T00:00:01", 1.5, now=102.9)


def test_a_new_holder_restarts_the_clock_and_a_released_lease_is_free_at_once() -> None:
    seen = Observed()
    seen.expired("a", "t1", 1.5, now=100.0)
    assert not seen.expired("b", "t1", 1.5, now=101.6)
    assert seen.expired(None, None, 1.5, now=101.7)  # released on a clean exit


def test_a_release_with_the_api_server_gone_neither_raises_nor_waits_for_it() -> None:
    """The whole stack stopping: the API server went first. Raised, kopf retried the
    cleanup after 60 s and the stack's stop timed out."""
    config = client.Configuration()
    config.host = "http://127.0.0.1:1"  # nothing listens: connection refused
    lease = Lease(client.ApiClient(config), "fovea-models-operator", "ns", "me", 1.5)
    lease._held_until = datetime.now(UTC) + timedelta(seconds=1)
    lease.release()
    assert lease._held_until is None
