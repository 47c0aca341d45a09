"""Per-object retries with exponential backoff, as controller-runtime's workqueue does.

client-go's `ItemExponentialFailureRateLimiter` gives each key its own delay,
`base * 2**(failures - 1)` up to a cap, and forgets the key on success. The
planner keeps planning every object on every pass; this queue only says which
writes are due again, so one object that keeps failing (a namespace whose
ResourceQuota refuses every pod) waits on its own and never slows the others.
Time is an input: the queue holds no clock and no thread.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from fovea.domain.backoff import exponential

BASE_DELAY_S = 0.5
MAX_DELAY_S = 60.0


@dataclass
class _Entry:
    failures: int
    due: float  # monotonic seconds when the next try may run


class RetryQueue:
    """Which keys may be tried now, after how many failures each."""

    def __init__(self, base_s: float = BASE_DELAY_S, max_s: float = MAX_DELAY_S) -> None:
        if base_s <= 0 or max_s < base_s:
            raise ValueError(f"need 0 < base_s <= max_s, got {base_s}, {max_s}")
        self.base_s, self.max_s = base_s, max_s
        self._entries: dict[Hashable, _Entry] = {}

    def delay(self, failures: int) -> float:
        """The wait after the given number of consecutive failures (1, 2, ...)."""
        if failures <= 0:
            return 0.0
        return exponential(failures - 1, self.base_s, self.max_s)

    def failed(self, key: Hashable, now: float) -> float:
        """Record a failure of `key` at `now`; returns how long it waits before the next try."""
        entry = self._entries.get(key)
        failures = 1 if entry is None else entry.failures + 1
        wait = self.delay(failures)
        self._entries[key] = _Entry(failures, now + wait)
        return wait

    def forget(self, key: Hashable) -> None:
        """The key succeeded (or is no longer wanted): its next failure starts from the base."""
        self._entries.pop(key, None)

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not among `keys` (objects the plan no longer writes)."""
        wanted = set(keys)
        for key in [k for k in self._entries if k not in wanted]:
            del self._entries[key]

    def due(self, key: Hashable, now: float) -> bool:
        """Whether `key` may be tried at `now` (never failed, or its delay is over)."""
        entry = self._entries.get(key)
        return entry is None or now >= entry.due

    def failures(self, key: Hashable) -> int:
        entry = self._entries.get(key)
        return 0 if entry is None else entry.failures

    def next_due_in(self, now: float) -> float | None:
        """Seconds until the earliest waiting key is due (0 if one is due), None if none waits."""
        if not self._entries:
            return None
        return max(0.0, min(e.due for e in self._entries.values()) - now)

    def __len__(self) -> int:
        return len(self._entries)
