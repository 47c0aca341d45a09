"""The asyncio side of the cache: wakes `?wait=` requests and feeds `/events`.

The cache publishes snapshots from its rebuild thread; the feed hops them
onto the event loop, where waiters and per-client queues live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fovea.api.cache import ClusterCache, Snapshot

log = logging.getLogger(__name__)

QUEUE_SIZE = 256


class ChangeFeed:
    """Change notifications on one event loop."""

    def __init__(self, cache: ClusterCache) -> None:
        self.cache = cache
        self.loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._queues: set[asyncio.Queue[Snapshot | None]] = set()
        self._closed = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start receiving the cache's snapshots on `loop` (the app's, at startup)."""
        self.loop = loop
        self.cache.add_listener(self._from_thread)

    def detach(self) -> None:
        """Stop receiving snapshots (the app is shutting down)."""
        self.cache.remove_listener(self._from_thread)

    async def wait_change(self, timeout_s: float) -> bool:
        """Sleep until the next snapshot (True) or until `timeout_s` passes (False)."""
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def subscribe(self) -> asyncio.Queue[Snapshot | None]:
        """A queue of every later snapshot (the oldest dropped when full); None: the end."""
        queue: asyncio.Queue[Snapshot | None] = asyncio.Queue(QUEUE_SIZE)
        if self._closed:
            queue.put_nowait(None)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Snapshot | None]) -> None:
        """Forget a subscriber's queue (its stream ended)."""
        self._queues.discard(queue)

    def close(self) -> None:
        """End every subscription (the server is stopping); call on the loop."""
        self._closed = True
        for queue in self._queues:
            _put_dropping_oldest(queue, None)

    def _from_thread(self, snapshot: Snapshot) -> None:
        # The loop may already be closed during shutdown: nothing left to wake then.
        if self.loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._publish, snapshot)

    def _publish(self, snapshot: Snapshot) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for queue in self._queues:
            _put_dropping_oldest(queue, snapshot)


def _put_dropping_oldest(queue: asyncio.Queue[Snapshot | None], item: Snapshot | None) -> None:
    # A slow client loses the oldest snapshot, never the newest (nor the end).
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
