"""Events as the executor posts them: times, a stable name per repeated event, counted repeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fovea.domain import constants as c
from fovea.domain.conditions import EventType, Reason
from fovea.operator.cluster import event_body, event_repeat
from fovea.operator.reconcile import Event

NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


def event(message: str = "placed on gpu-0 GPU 0", kind: str = c.SELECTION_KIND) -> Event:
    return Event("ns", "det", "uid-det", EventType.NORMAL, Reason.PLACED, message, kind=kind)


def test_an_event_carries_its_times_and_its_object() -> None:
    body = event_body(event(), NOW)
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-26T12:00:00Z"
    assert body["eventTime"] == "2026-11-26T12:00:00.123456Z"
    assert body["count"] == 1 and body["action"] and body["reportingComponent"]
    assert body["involvedObject"] == {
        "apiVersion": c.API_VERSION,
        "kind": c.SELECTION_KIND,
        "name": "det",
        "namespace": "ns",
        "uid": "uid-det",
    }
    assert (body["type"], body["reason"]) == ("Normal", "Placed")


def test_the_same_event_has_the_same_name_and_another_one_another() -> None:
    name = event_body(event(), NOW)["metadata"]["name"]
    assert name == event_body(event(), NOW + timedelta(hours=1))["metadata"]["name"]
    assert name.startswith("det.")
    assert name != event_body(event("placed on gpu-1 GPU 0"), NOW)["metadata"]["name"]
    assert name != event_body(event(kind=c.CATALOG_KIND), NOW)["metadata"]["name"]


def test_a_repeat_counts_on_the_existing_event() -> None:
    later = NOW + timedelta(minutes=5)
    first = event_body(event(), NOW)
    second = event_repeat(first, later)
    assert second["count"] == 2 and second["series"]["count"] == 2
    assert second["lastTimestamp"] == "2026-11-26T12:05:00Z"
    assert event_repeat({**first, **second}, later)["count"] == 3
