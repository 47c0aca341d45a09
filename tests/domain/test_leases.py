"""Session leases: Lease bodies, liveness, and the planner's protection (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from fovea.domain import leases
from fovea.domain.gpus import Gpu
from fovea.domain.placement import Demand, Outcome, Slot, plan

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def test_a_lease_body_names_the_selection_and_lasts_its_ttl() -> None:
    body = leases.lease_body("object-detection", "object_detection", 300, NOW)
    assert body["metadata"]["name"] == "fovea-session-object-detection"
    assert body["metadata"]["labels"][leases.LABEL_SESSION] == "true"
    assert body["spec"]["leaseDurationSeconds"] == 300
    assert leases.expires_at(body) == NOW.timestamp() + 300
    assert leases.expiry_text(body) == "2026-11-30T08:05:00Z"


def test_only_live_leases_count() -> None:
    live = leases.lease_body("a", "a", 300, NOW)
    old = leases.lease_body("b", "b", 60, NOW)
    for lease, ns in ((live, "team"), (old, "team")):
        lease["metadata"]["namespace"] = ns
    assert leases.live_selections([live, old], NOW.timestamp() + 120) == {"team/a"}
    assert leases.live_selections([{"metadata": {}}], 0) == frozenset()


def test_a_leased_model_is_not_evicted_for_equal_priority_but_is_for_higher() -> None:
    gpu = [Gpu(node="n", index=0, memory_gib=24.0)]
    held = Demand("ns/held", "a", "m", 18.0, priority=100, last_used=10.0, current=Slot("n", 0))
    newer = Demand("ns/newer", "b", "m", 18.0, priority=100, last_used=20.0)
    unleased = plan(gpu, [held, newer])
    assert unleased.placements["ns/newer"].outcome == Outcome.GPU  # least recently used goes

    leased = plan(gpu, leases.protect([held, newer], frozenset({"ns/held"})))
    assert leased.placements["ns/held"].outcome == Outcome.GPU
    assert leased.placements["ns/newer"].outcome != Outcome.GPU

    higher = Demand("ns/higher", "b", "m", 18.0, priority=500)
    outranked = plan(gpu, leases.protect([held, higher], frozenset({"ns/held"})))
    assert outranked.placements["ns/higher"].outcome == Outcome.GPU
