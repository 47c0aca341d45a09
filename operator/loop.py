"""The planning pass: wait for a change, hold the Lease, read, decide, apply.

One pass at a time; bursts of watch events coalesce into one pass, and a
periodic pass retries what is due. A pass reads the watch-fed cache
(`fovea.operator.cache`), and waits while it is not synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from fovea.domain.backoff import Backoff
from fovea.operator.cache import NotSynced
from fovea.operator.cluster import Cluster
from fovea.operator.leader import Lease, utcnow
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import reconcile
from fovea.operator.settings import OperatorSettings

log = logging.getLogger(__name__)


@dataclass
class Planner:
    cluster: Cluster
    lease: Lease
    settings: OperatorSettings
    pod_settings: PodSettings
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    passes: int = 0
    # Monotonic time of the last completed loop iteration (a pass, or a standby's check).
    last_pass: float = field(default_factory=time.monotonic)

    async def run(self) -> None:
        """Run passes until cancelled."""
        backoff = Backoff(0.5, 10.0)
        unsynced: dict[str, str] = {}
        while True:
            # Wake for a change, a refused write's retry (its own backoff), or the resync.
            retry = self.cluster.next_retry_in()
            timeout = self.settings.resync_seconds if retry is None else retry
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.wake.wait(), timeout=min(timeout, self.settings.resync_seconds)
                )
            await asyncio.sleep(self.settings.debounce_seconds)
            self.wake.clear()
            try:
                changed = await asyncio.to_thread(self.run_once)
                backoff.reset()
                if changed:
                    self.wake.set()  # look again: our own writes may unlock more
            except NotSynced as exc:  # the cache's watches wake the planner once it is
                if self.cluster.cache.unsynced() != unsynced:
                    unsynced = self.cluster.cache.unsynced()
                    log.info("waiting for the cache (%s)", exc)
            except (ApiException, HTTPError, OSError) as exc:
                delay = backoff.next()
                log.warning("pass failed (%s); retrying in %.1fs", _why(exc), delay)
                await asyncio.sleep(delay)
                self.wake.set()
            except Exception:  # a bug: say so with the traceback, and keep planning
                delay = backoff.next()
                log.exception("pass failed unexpectedly; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                self.wake.set()
            else:
                self.last_pass = time.monotonic()

    def stale(self, now: float | None = None) -> str | None:
        """Why the planner is not alive (no pass completed within 3 resyncs), else None."""
        bound = 3 * self.settings.resync_seconds
        age = (time.monotonic() if now is None else now) - self.last_pass
        if age <= bound:
            return None
        return f"no planning pass completed for {age:.0f}s (bound {bound:.0f}s)"

    async def keep_lease(self) -> None:
        """Renew the Lease every third of its duration; as a standby, look ten times as often."""
        while True:
            was_held = self.lease.held(utcnow())
            try:
                held = await asyncio.to_thread(self.lease.try_acquire, utcnow())
                if held and not was_held:
                    log.info("holding the Lease: planning")
                    self.wake.set()
            except (ApiException, HTTPError, OSError) as exc:
                log.warning("Lease renewal failed (%s)", _why(exc))
            await asyncio.sleep(self.lease.next_try_in(utcnow()))

    def run_once(self) -> bool:
        """One pass. Returns whether it changed anything."""
        now = utcnow()
        if not self.lease.held(now) and not self.lease.try_acquire(now):
            return False
        world = self.cluster.snapshot(now)
        actions = reconcile(world, self.pod_settings).actions()
        # A plan that took longer than the Lease's renewal (a large world, a starved CPU) is
        # still ours to write if the record is still ours: renew it first. Only a Lease that
        # another replica now holds stops the writes (giving up on a slow pass alone left a
        # large world unwritten pass after pass: bench/scale.py at 200 selections under load).
        if not self.lease.held(utcnow()) and not self.lease.try_acquire(utcnow()):
            return True  # look again at once: the next pass finds who holds it
        applied = self.cluster.apply(actions)  # a refused write never fails the pass
        self.passes += 1
        return applied.changed


def _why(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return type(exc).__name__
