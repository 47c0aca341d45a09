"""The planning pass: wait for a change, hold the Lease, read, decide, apply.

One pass at a time; bursts of watch events coalesce into one pass, and a
periodic resync repairs anything a missed event left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

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

    async def run(self) -> None:
        """Run passes until cancelled."""
        backoff = 0.5
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings.resync_seconds)
            await asyncio.sleep(self.settings.debounce_seconds)
            self.wake.clear()
            try:
                changed = await asyncio.to_thread(self.run_once)
                backoff = 0.5
                if changed:
                    self.wake.set()  # look again: our own writes may unlock more
            except (ApiException, HTTPError, OSError) as exc:
                log.warning("pass failed (%s); retrying in %.1fs", _why(exc), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                self.wake.set()

    async def keep_lease(self) -> None:
        """Renew (or try to take) the Lease every third of its duration."""
        while True:
            was_held = self.lease.held(utcnow())
            try:
                held = await asyncio.to_thread(self.lease.try_acquire, utcnow())
                if held and not was_held:
                    log.info("holding the Lease: planning")
                    self.wake.set()
            except (ApiException, HTTPError, OSError) as exc:
                log.warning("Lease renewal failed (%s)", _why(exc))
            await asyncio.sleep(self.settings.lease_seconds / 3)

    def run_once(self) -> bool:
        """One pass. Returns whether it changed anything."""
        now = utcnow()
        if not self.lease.held(now) and not self.lease.try_acquire(now):
            return False
        world = self.cluster.snapshot(now)
        actions = reconcile(world, self.pod_settings)
        self.cluster.apply(actions)
        self.passes += 1
        return bool(actions.create or actions.delete or actions.status)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return type(exc).__name__
