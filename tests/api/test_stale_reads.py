"""When reads may answer from a view that is no longer current (pure)."""

from __future__ import annotations

from api_builders import state
from fovea.api.cache import Snapshot
from fovea.api.stale_reads import readable, stale_seconds


def _snapshot(unsynced: dict[str, str], stale_since: float | None) -> Snapshot:
    snap = Snapshot(1, state([]), unsynced, [])
    snap.stale_since = stale_since
    return snap


def test_a_synced_view_is_current_and_readable() -> None:
    snap = _snapshot({}, None)
    assert stale_seconds(snap, 100.0) is None
    assert readable(snap, 0.0, now=100.0)


def test_a_view_that_never_synced_is_not_readable() -> None:
    snap = _snapshot({"nodes": "not listed yet"}, None)
    assert stale_seconds(snap, 100.0) is None
    assert not readable(snap, 300.0, now=100.0)


def test_a_lost_view_is_readable_for_the_limit_then_not() -> None:
    snap = _snapshot({"nodes": "watch broken"}, 100.0)
    assert stale_seconds(snap, 130.0) == 30.0
    assert readable(snap, 300.0, now=130.0)
    assert readable(snap, 300.0, now=400.0)
    assert not readable(snap, 300.0, now=400.5)
    assert not readable(snap, 0.0, now=100.5)  # 0: 503 at once
