"""Per-object retries with exponential backoff (the pure queue; time is an input)."""

from __future__ import annotations

import pytest

from fovea.operator.workqueue import RetryQueue


def test_each_failure_doubles_the_delay_up_to_the_cap() -> None:
    queue = RetryQueue(base_s=0.5, max_s=4.0)
    assert [queue.failed("k", 0.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert queue.failures("k") == 6


def test_a_key_waits_for_its_own_delay_only() -> None:
    queue = RetryQueue(base_s=1.0, max_s=60.0)
    queue.failed("refused", 10.0)
    queue.failed("refused", 10.0)  # second failure: 2 s
    assert not queue.due("refused", 11.9)
    assert queue.due("refused", 12.0)
    assert queue.due("other", 10.0)  # never failed: always due
    assert queue.next_due_in(10.5) == pytest.approx(1.5)


def test_success_forgets_and_the_next_failure_starts_from_the_base() -> None:
    queue = RetryQueue(base_s=1.0, max_s=60.0)
    for _ in range(4):
        queue.failed("k", 0.0)
    queue.forget("k")
    assert queue.due("k", 0.0) and queue.failures("k") == 0
    assert queue.failed("k", 0.0) == 1.0
    queue.forget("never-seen")  # harmless


def test_retain_drops_keys_no_longer_written() -> None:
    queue = RetryQueue()
    queue.failed("a", 0.0)
    queue.failed("b", 0.0)
    queue.retain({"b", "c"})
    assert len(queue) == 1 and queue.failures("b") == 1 and queue.failures("a") == 0


def test_next_due_in_is_none_when_nothing_waits_and_never_negative() -> None:
    queue = RetryQueue(base_s=1.0, max_s=60.0)
    assert queue.next_due_in(0.0) is None
    queue.failed("k", 0.0)
    assert queue.next_due_in(5.0) == 0.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_bad_settings_are_refused(base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        RetryQueue(base_s=base, max_s=cap)


def test_a_huge_failure_count_stays_at_the_cap() -> None:
    queue = RetryQueue(base_s=0.5, max_s=60.0)
    assert queue.delay(10_000) == 60.0
    assert queue.delay(0) == 0.0
