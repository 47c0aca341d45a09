"""The server-sent event stream's formatting (pure)."""

from __future__ import annotations

import json

from api_builders import selection, state
from fovea.api.cache import Change, Snapshot
from fovea.api.events import events_between, initial_events, sse


def snapshot(version: int, unsynced: dict[str, str], changes: list[Change], model: str) -> Snapshot:
    sel = selection("object_detection", model, status={"phase": "Loading"})
    return Snapshot(version, state([sel]), unsynced, changes)


def parse(chunk: bytes) -> tuple[str, dict[str, object]]:
    lines = dict(line.split(": ", 1) for line in chunk.decode().strip().split("\n"))
    return lines["event"], json.loads(lines["data"])


def test_sse_frames_one_event() -> None:
    assert sse("status", b'{"a":1}', 7) == b'id: 7\nevent: status\ndata: {"a":1}\n\n'


def test_a_new_subscriber_gets_sync_state_then_status() -> None:
    chunks = initial_events(snapshot(1, {}, [], "yolov8n"))
    assert [parse(c)[0] for c in chunks] == ["sync", "status"]
    assert parse(chunks[0])[1] == {"synced": True, "unsynced": {}}
    unsynced = initial_events(snapshot(1, {"nodes": "refused"}, [], "yolov8n"))
    assert [parse(c)[0] for c in unsynced] == ["sync"]


def test_a_selection_change_is_one_event_with_phase_and_model() -> None:
    before = snapshot(1, {}, [], "yolov8n")
    changed = selection("object_detection", "groundingdino", 2, {"phase": "Loading"})
    after = snapshot(2, {}, [Change("MODIFIED", changed)], "groundingdino")
    chunks = events_between(before, after)
    kinds = [parse(c)[0] for c in chunks]
    # /status changed only in its `loading` section: groundingdino is on its way now.
    assert kinds == ["selection", "status"]
    assert parse(chunks[1])[1]["loading"]["object_detection"]["model"] == "groundingdino"
    event = parse(chunks[0])[1]
    assert event["type"] == "MODIFIED"
    assert event["task"] == "object_detection"
    assert event["model"] == "groundingdino"
    assert event["phase"] == "Loading"
    assert event["generation"] == 2


def test_losing_the_cluster_is_a_sync_event() -> None:
    before = snapshot(1, {}, [], "yolov8n")
    after = snapshot(2, {"nodes": "connection refused"}, [], "yolov8n")
    chunks = events_between(before, after)
    assert [parse(c) for c in chunks] == [
        ("sync", {"synced": False, "unsynced": {"nodes": "connection refused"}})
    ]
