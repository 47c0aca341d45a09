"""The one way a test waits: poll a check until it holds, within an explicit timeout.

Every wait of the suite goes through `eventually` (or `eventually_async` inside an
event loop); no test sleeps a fixed time to let something happen. A timeout is
stated where a wait needs another than `WAIT_S`, so each wait says how long it may take.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar, overload

import pytest

T = TypeVar("T")

# The default bound of a wait: long enough for the slowest thing the cluster does on a
# busy two-core machine (a model pod that starts, loads and reports), so that a wait
# that times out means "it never happened", not "it was slow".
WAIT_S = 45.0
# How often a check is tried again: the checks are cheap (a GET, a poll()).
INTERVAL_S = 0.1


@overload
def eventually(
    check: Callable[[], T | None],
    timeout: float = ...,
    interval: float = ...,
    what: None = None,
) -> T | None: ...


@overload
def eventually(
    check: Callable[[], T | None],
    timeout: float = ...,
    interval: float = ...,
    *,
    what: str,
) -> T: ...


def eventually(
    check: Callable[[], T | None],
    timeout: float = WAIT_S,
    interval: float = INTERVAL_S,
    what: str | None = None,
) -> T | None:
    """The first truthy result of `check` within `timeout` seconds.

    On a timeout: None (the caller asserts), or with `what` the test fails
    saying what it waited for and how long.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            if what is not None:
                pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
            return None
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], T | None],
    timeout: float = WAIT_S,
    interval: float = INTERVAL_S,
    what: str | None = None,
) -> T | None:
    """`eventually` inside an event loop: the loop runs the other tasks meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            if what is not None:
                pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
            return None
        await asyncio.sleep(interval)
