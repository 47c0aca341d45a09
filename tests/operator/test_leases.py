"""Session leases in the operator's decision: a leased model keeps its GPU against its peers."""

from __future__ import annotations

import dataclasses

from builders import apply, catalog, catalog_spec, option, running, selection, world
from fovea.domain.resources import Phase
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import World, reconcile

TASKS = {"det": {"big": option(18, modelId="big")}, "sum": {"big": option(18, modelId="big")}}


def holding_det() -> World:
    """det's 18 GiB model runs on the only GPU (24 GiB, 80%: 19.2 GiB), last used long ago."""
    w = world(
        selection("det", "big", {"lastUsed": "2026-01-01T00:00:00Z"}),
        catalogs=[catalog(catalog_spec(TASKS))],
    )
    actions = reconcile(w, PodSettings()).actions()
    w = apply(w, actions)
    return dataclasses.replace(w, pods=[running(p) for p in w.pods])


def with_sum(w: World, leased: frozenset[str]) -> World:
    newer = selection("sum", "big", {"lastUsed": "2026-11-01T00:00:00Z"})
    return dataclasses.replace(w, selections=[*w.selections, newer], session_leases=leased)


def phases(w: World) -> dict[str, str]:
    decisions = reconcile(w, PodSettings())
    return {d.key[1]: d.status.phase for d in decisions.selections}


def test_without_a_lease_the_least_recently_used_model_of_equal_priority_goes() -> None:
    assert phases(with_sum(holding_det(), frozenset())) == {
        "det": Phase.EVICTED,
        "sum": Phase.SCHEDULING,
    }


def test_a_leased_model_is_not_evicted_for_a_selection_of_equal_priority() -> None:
    got = phases(with_sum(holding_det(), frozenset({"ns/det"})))
    assert got["det"] != Phase.EVICTED and got["sum"] != Phase.SCHEDULING
