"""How one watch event is handled (the list/watch loop itself runs in the integration tests)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.api.clients import ClientSource
from fovea.watch import Gone, Source, Watcher


class Recorder:
    """Records what a watcher delivers (stands in for the cache, not for Kubernetes)."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, str, str]] = []

    def reset(self, kind: str, items: list[dict[str, Any]]) -> None:
        raise AssertionError("not expected")

    def apply(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        self.applied.append((kind, event_type, obj["metadata"]["name"]))

    def connection(self, kind: str, synced: bool, why: str = "") -> None:
        raise AssertionError("not expected")


def watcher() -> tuple[Watcher, Recorder]:
    sink = Recorder()
    source = Source("nodes", lambda api: client.CoreV1Api(api).list_node)
    clients = ClientSource.fixed(client.ApiClient())
    return Watcher(source, sink, clients, watch_timeout_s=60, max_backoff_s=1), sink


def obj(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


def test_changes_reach_the_sink_and_move_the_resource_version() -> None:
    w, sink = watcher()
    assert w._handle({"type": "ADDED", "object": obj("a", "11")}) == "11"
    assert w._handle({"type": "MODIFIED", "object": obj("a", "12")}) == "12"
    assert w._handle({"type": "DELETED", "object": obj("a", "13")}) == "13"
    assert sink.applied == [
        ("nodes", "ADDED", "a"),
        ("nodes", "MODIFIED", "a"),
        ("nodes", "DELETED", "a"),
    ]


def test_a_bookmark_only_moves_the_resource_version() -> None:
    w, sink = watcher()
    assert (
        w._handle({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "99"}}}) == "99"
    )
    assert sink.applied == []


def test_410_gone_means_relist_and_other_errors_mean_reconnect() -> None:
    w, _ = watcher()
    with pytest.raises(Gone):
        w._handle({"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}})
    with pytest.raises(ApiException) as caught:
        w._handle({"type": "ERROR", "object": {"code": 500, "message": "etcd"}})
    assert caught.value.status == 500
