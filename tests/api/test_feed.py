"""The change feed: waking `?wait=` requests and ending `/events` streams (no cluster)."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes import client

from api_builders import state
from fovea.api import feed as feed_module
from fovea.api.cache import ClusterCache, Snapshot
from fovea.api.clients import ClientSource
from fovea.api.feed import ChangeFeed


def new_feed() -> ChangeFeed:
    # A cache that is never started: the feed only needs something to attach to.
    return ChangeFeed(ClusterCache(ClientSource.fixed(client.ApiClient()), "default"))


def snapshot(version: int) -> Snapshot:
    return Snapshot(version, state(), {}, [])


def test_a_waiter_wakes_on_the_next_snapshot_and_times_out_without_one() -> None:
    async def scenario() -> tuple[bool, bool]:
        feed = new_feed()
        feed.attach(asyncio.get_running_loop())
        waiter = asyncio.create_task(feed.wait_change(5))
        await asyncio.sleep(0)
        feed._from_thread(snapshot(2))  # what the cache's rebuild thread calls
        woke = await waiter
        timed_out = await feed.wait_change(0.05)
        return woke, timed_out

    assert asyncio.run(scenario()) == (True, False)


def test_a_slow_subscriber_loses_the_oldest_snapshots_not_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed_module, "QUEUE_SIZE", 3)

    async def scenario() -> list[int]:
        feed = new_feed()
        feed.attach(asyncio.get_running_loop())
        queue = feed.subscribe()
        for version in range(1, 6):
            feed._publish(snapshot(version))
        versions = []
        while not queue.empty():
            item = queue.get_nowait()
            assert item is not None
            versions.append(item.version)
        return versions

    assert asyncio.run(scenario()) == [3, 4, 5]


def test_close_ends_every_subscription_even_later_ones() -> None:
    async def scenario() -> tuple[object, object]:
        feed = new_feed()
        feed.attach(asyncio.get_running_loop())
        before = feed.subscribe()
        feed.close()
        after = feed.subscribe()
        return await before.get(), await after.get()

    assert asyncio.run(scenario()) == (None, None)
