"""The one backoff formula, and the loop helper built on it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fovea.domain.backoff import Backoff, exponential


def test_doubles_from_the_base_up_to_the_cap() -> None:
    assert [exponential(a, 0.5, 15.0) for a in range(8)] == [0.5, 1, 2, 4, 8, 15, 15, 15]
    assert exponential(-3, 1.0, 30.0) == 1.0  # no attempt before the first
    assert exponential(10**6, 1.0, 30.0) == 30.0  # a long streak does not overflow


@given(st.integers(0, 10**4), st.floats(0.001, 100), st.floats(0.001, 1000))
def test_never_below_the_base_nor_above_the_cap(attempt: int, base: float, cap: float) -> None:
    delay = exponential(attempt, base, cap)
    assert delay <= cap and (delay >= base or delay == cap)
    assert exponential(attempt + 1, base, cap) >= delay


def test_a_loop_backs_off_after_each_failure_and_starts_again_after_a_success() -> None:
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next() == 0.5
