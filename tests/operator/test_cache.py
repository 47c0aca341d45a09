"""The operator's watch-fed cache as the watches' sink (the watch loop itself runs live)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from fovea.domain import constants as c
from fovea.operator import cache as k
from fovea.operator.cache import NotSynced, WorldCache, sources
from fovea.watch import Fixed


def obj(name: str, version: int, ns: str = "a", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "resourceVersion": str(version)}
    return {"metadata": {**meta, "managedFields": [{"manager": "x"}]}, **extra}


def synced(namespaces: tuple[str, ...] = ()) -> tuple[WorldCache, list[int]]:
    cache = WorldCache(Fixed(client.ApiClient()), namespaces)
    woken: list[int] = []
    for source in cache.unsynced():
        cache.reset(source, [])
        cache.connection(source, True)
    cache.on_change = lambda: woken.append(1)
    return cache, woken


def test_nothing_is_read_until_every_kind_is_listed() -> None:
    cache = WorldCache(Fixed(client.ApiClient()))
    first, *rest = list(cache.unsynced())
    cache.reset(first, [])
    cache.connection(first, True)
    with pytest.raises(NotSynced, match="not listed yet"):
        cache.items(k.SELECTIONS)
    for source in rest:
        cache.connection(source, True)
    assert cache.items(k.SELECTIONS) == [] and cache.wait_synced(0)
    cache.connection(k.PODS, False, "HTTP 500")
    with pytest.raises(NotSynced, match="pods: HTTP 500"):
        cache.items(k.SELECTIONS)


def test_a_confined_operator_watches_each_namespace_and_the_cluster_wide_kinds_once() -> None:
    names = {s.kind for s in sources(["b", "a"])}
    assert {"selections@a", "selections@b", "namespaces@a", "pods@b", "nodes"} <= names
    assert {"nodes", "node-pods", "deviceclasses", "resourceslices"} <= names
    assert "selections" not in names and "nodes@a" not in names
    by_kind = {s.kind: s for s in sources(["a"])}
    assert dict(by_kind["namespaces@a"].kwargs) == {"field_selector": "metadata.name=a"}
    assert by_kind["selections@a"].args == (c.GROUP, c.VERSION, "a", c.SELECTION_PLURAL)
    assert by_kind["resourceclaims@a"].optional and not by_kind["pods@a"].optional


def test_items_of_a_kind_come_from_all_its_namespaces_in_order() -> None:
    cache, _ = synced(("a", "b"))
    cache.apply("selections@b", "ADDED", obj("x", 5, ns="b"))
    cache.apply("selections@a", "ADDED", obj("y", 6, ns="a"))
    assert [o["metadata"]["name"] for o in cache.items(k.SELECTIONS)] == ["y", "x"]
    assert all("managedFields" not in o["metadata"] for o in cache.items(k.SELECTIONS))


def test_a_write_is_stored_at_once_but_never_over_a_newer_watched_version() -> None:
    cache, woken = synced()
    cache.wrote(k.PODS, obj("p", 10))
    assert [o["metadata"]["resourceVersion"] for o in cache.items(k.PODS)] == ["10"]
    cache.apply(k.PODS, "MODIFIED", obj("p", 12))
    cache.wrote(k.PODS, obj("p", 11))  # an answer that arrives after a newer event
    assert [o["metadata"]["resourceVersion"] for o in cache.items(k.PODS)] == ["12"]
    cache.deleted(k.PODS, "a", "p")
    assert cache.items(k.PODS) == []
    assert woken == [1]  # only the watched change wakes the planner, not our own writes


def test_a_node_heartbeat_does_not_wake_the_planner_but_a_cordon_does() -> None:
    cache, woken = synced()

    def node(version: int, beat: str, unschedulable: bool = False) -> dict[str, Any]:
        ready = {"type": "Ready", "status": "True", "lastHeartbeatTime": beat}
        return {
            "metadata": {"name": "n", "resourceVersion": str(version)},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": [ready]},
        }

    cache.apply(k.NODES, "ADDED", node(1, "t1"))
    cache.apply(k.NODES, "MODIFIED", node(2, "t2"))
    assert len(woken) == 1
    cache.apply(k.NODES, "MODIFIED", node(3, "t3", unschedulable=True))
    assert len(woken) == 2


def test_a_relist_that_finds_what_is_stored_wakes_nothing_and_is_counted() -> None:
    cache, woken = synced()
    cache.reset(k.SELECTIONS, [obj("x", 5)])
    assert len(woken) == 1 and cache.relists == 1
    cache.reset(k.SELECTIONS, [obj("x", 5)])
    assert len(woken) == 1 and cache.relists == 2
