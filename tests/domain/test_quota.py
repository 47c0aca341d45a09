"""GPU-memory quotas per namespace: the pure admission decision."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fovea.domain import constants as c
from fovea.domain.placement import Demand, Slot
from fovea.domain.quota import (
    UNLIMITED,
    Quota,
    admit,
    parse_gib,
    quota_from_annotations,
)
from fovea.domain.resources import DevicePolicy


def demand(
    key: str,
    vram: float,
    priority: int = 100,
    *,
    last_used: float = 0.0,
    current: Slot | None = None,
    device_policy: DevicePolicy = DevicePolicy.AUTO,
    external: bool = False,
) -> Demand:
    return Demand(
        key=key,
        task=key.split("/")[1],
        model="m",
        vram_gib=vram,
        priority=priority,
        last_used=last_used,
        current=current,
        device_policy=device_policy,
        external=external,
    )


@pytest.mark.parametrize(
    ("text", "gib"),
    [
        ("40", 40.0),
        ("40Gi", 40.0),
        ("2.5", 2.5),
        ("40960Mi", 40.0),
        (" 8Gi ", 8.0),
        ("0", 0.0),
        # As every message prints a size (GB = GiB, domain/units.py):
        ("40GB", 40.0),
        ("40 GB", 40.0),
        ("4 Gi", 4.0),
        ("512MB", 0.5),
    ],
)
def test_parse_gib(text: str, gib: float) -> None:
    assert parse_gib(text) == pytest.approx(gib)


@pytest.mark.parametrize("text", ["", "lots", "-1", "nan", "inf", "4 parsecs", "-4GB"])
def test_parse_gib_refuses_what_is_not_a_figure(text: str) -> None:
    with pytest.raises(ValueError):
        parse_gib(text)


def test_annotations_override_the_default_field_by_field() -> None:
    default = Quota(100.0, 500)
    assert quota_from_annotations(None, default) == default
    ann = {c.ANNOTATION_GPU_MEMORY_QUOTA: "40Gi"}
    assert quota_from_annotations(ann, default) == Quota(40.0, 500)
    ann = {c.ANNOTATION_MAX_PRIORITY: "10"}
    assert quota_from_annotations(ann, UNLIMITED) == Quota(None, 10)


def test_an_annotation_that_does_not_parse_keeps_the_default_and_says_why() -> None:
    quota = quota_from_annotations({c.ANNOTATION_GPU_MEMORY_QUOTA: "lots"}, Quota(8.0))
    assert quota.gpu_memory_gib == 8.0
    assert quota.problem is not None and "lots" in quota.problem


def test_admits_by_priority_until_the_quota_is_reached() -> None:
    demands = [demand("a/low", 10, 10), demand("a/high", 10, 500), demand("a/mid", 10, 100)]
    result = admit(demands, {"a": Quota(20.0)})
    assert sorted(d.key for d in result.admitted) == ["a/high", "a/mid"]
    message = result.refused["a/low"]
    assert "20.0 GB" in message and "a" in message and "needs 10.0 GB" in message
    assert result.use["a"].used_gib == 20.0 and result.use["a"].refused == 1


def test_equal_priority_keeps_the_running_model_then_the_recently_used() -> None:
    running = demand("a/running", 10, current=Slot("n", 0))
    recent = demand("a/recent", 10, last_used=2000.0)
    older = demand("a/older", 10, last_used=1000.0)
    result = admit([older, recent, running], {"a": Quota(20.0)})
    assert sorted(d.key for d in result.admitted) == ["a/recent", "a/running"]
    assert list(result.refused) == ["a/older"]


def test_a_smaller_demand_of_lower_rank_still_fits_after_a_refusal() -> None:
    result = admit(
        [demand("a/big", 15, 500), demand("a/x", 10, 400), demand("a/s", 5, 1)], {"a": Quota(20.0)}
    )
    assert sorted(d.key for d in result.admitted) == ["a/big", "a/s"]
    assert list(result.refused) == ["a/x"]


def test_other_namespaces_and_demands_without_a_gpu_are_untouched() -> None:
    demands = [
        demand("a/one", 30),
        demand("a/cpu", 50, device_policy=DevicePolicy.CPU),
        demand("a/api", 50, external=True),
        demand("b/one", 300),
    ]
    result = admit(demands, {"a": Quota(30.0)})
    assert not result.refused
    assert {d.key for d in result.admitted} == {d.key for d in demands}
    assert set(result.use) == {"a"}
    assert result.use["a"].used_gib == 30.0


def test_priority_above_the_ceiling_is_clamped() -> None:
    result = admit([demand("a/vip", 1, 900), demand("b/vip", 1, 900)], {"a": Quota(None, 100)})
    by_key = {d.key: d.priority for d in result.admitted}
    assert by_key == {"a/vip": 100, "b/vip": 900}


def test_a_namespace_with_a_quota_and_no_demands_reports_zero_use() -> None:
    result = admit([], {"a": Quota(8.0), "b": UNLIMITED})
    assert set(result.use) == {"a"}
    assert result.use["a"].used_gib == 0.0


@given(
    st.lists(
        st.tuples(st.sampled_from("ab"), st.floats(0, 40), st.integers(0, 1000)),
        max_size=12,
    ),
    st.floats(0, 60),
)
def test_never_beyond_the_quota_and_every_demand_decided_once(
    specs: list[tuple[str, float, int]], limit: float
) -> None:
    demands = [demand(f"{ns}/d{i}", vram, prio) for i, (ns, vram, prio) in enumerate(specs)]
    result = admit(demands, {"a": Quota(limit)})
    admitted = {d.key for d in result.admitted}
    assert admitted.isdisjoint(result.refused)
    assert admitted | set(result.refused) == {d.key for d in demands}
    held = sum(d.vram_gib for d in result.admitted if d.key.startswith("a/"))
    assert held <= limit + 1e-6
    assert not any(k.startswith("b/") for k in result.refused)
    # Nothing refused would have fit beside what was admitted.
    for key in result.refused:
        need = next(d.vram_gib for d in demands if d.key == key)
        assert held + need > limit - 1e-6
