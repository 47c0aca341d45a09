"""Exponential backoff: the one formula every retry of the project waits by.

The operator's planning loop and its per-key retry queue, the API's watches and
cache rebuilds, the model pod's status reports and weight fetches, the node
agent's crash-loop restarts and `fovea-models up`'s restarts all wait `base`,
then twice that, and so on, up to a cap.
"""

from __future__ import annotations

from dataclasses import dataclass

# 2**62 times any base is far past every cap; the exponent stops there so a long
# streak of failures never overflows.
_MAX_EXPONENT = 62


def exponential(attempt: int, base: float, cap: float) -> float:
    """The wait before retry `attempt` (0 for the first): `base * 2**attempt`, at most `cap`."""
    return float(min(cap, base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT)))


@dataclass
class Backoff:
    """The waits of a loop that retries until it succeeds: `next()` after each failure
    (base, 2x base, ... at most cap), `reset()` after a success."""

    base: float
    cap: float
    failures: int = 0

    def next(self) -> float:
        delay = exponential(self.failures, self.base, self.cap)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
