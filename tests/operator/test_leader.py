"""The standby's judgement of the Lease: lapsed after a whole duration without a renewal."""

from __future__ import annotations

from fovea.operator.leader import Observed


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
