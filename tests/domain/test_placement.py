"""The placement planner: worked examples, then properties checked by hypothesis."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fovea.domain.gpus import Gpu
from fovea.domain.nodes import NodeCapacity
from fovea.domain.placement import EPSILON, MAX_MOVES, Demand, Outcome, Plan, Slot, plan
from fovea.domain.resources import DevicePolicy, SharingMode

AUTO, GPU_ONLY, CPU_ONLY = DevicePolicy.AUTO, DevicePolicy.GPU, DevicePolicy.CPU


def d(key: str, vram: float, **kw: object) -> Demand:
    return Demand(key=f"ns/{key}", task=key, model=f"m-{key}", vram_gib=vram, **kw)  # type: ignore[arg-type]


def where(result: Plan, key: str) -> tuple[Outcome, Slot | None]:
    p = result.placements[f"ns/{key}"]
    return p.outcome, p.slot


ONE_24 = [Gpu("gpu-a", 0, 24.0)]


# --- worked examples ----------------------------------------------------------------


def test_models_share_a_gpu_up_to_the_threshold() -> None:
    result = plan(ONE_24, [d("llm", 16), d("det", 1.5), d("track", 0.8)], threshold=0.8)
    assert {where(result, k) for k in ("llm", "det", "track")} == {(Outcome.GPU, Slot("gpu-a", 0))}
    usage = result.gpus[0]
    assert usage.capacity_gib == pytest.approx(19.2)
    assert usage.used_gib == pytest.approx(18.3)
    assert result.spare_gib("gpu-a", 0) == pytest.approx(0.9)
    assert result.placements["ns/llm"].reason == (
        "placed on gpu-a GPU 0: 18.3 of 19.2 GB in use (80% of 24.0 GB)"
    )


def test_no_room_falls_back_to_cpu_only_when_allowed() -> None:
    demands = [
        d("llm", 16),
        d("small", 4, cpu_memory_gib=2.0),
        d("pinned", 4, device_policy=GPU_ONLY, cpu_memory_gib=2.0),
        d("no-cpu", 4),
    ]
    result = plan(ONE_24, demands, threshold=0.8)
    assert where(result, "llm") == (Outcome.GPU, Slot("gpu-a", 0))
    cpu = result.placements["ns/small"]
    assert cpu.outcome == Outcome.CPU and cpu.node is None
    assert cpu.reason.startswith("no GPU has 4.0 GB free below the 80% threshold")
    assert cpu.reason.endswith("falls back to the CPU (2.0 GB)")
    assert result.placements["ns/pinned"].outcome == Outcome.UNSCHEDULABLE
    assert result.placements["ns/pinned"].reason.endswith("device policy gpu forbids the CPU")
    assert result.placements["ns/no-cpu"].outcome == Outcome.UNSCHEDULABLE
    assert "no cpu_memory_gb" in result.placements["ns/no-cpu"].reason


def test_bigger_than_any_gpu_is_unschedulable_and_disturbs_nothing() -> None:
    result = plan(ONE_24, [d("huge", 85), d("det", 1)], threshold=0.85)
    huge = result.placements["ns/huge"]
    assert huge.outcome == Outcome.UNSCHEDULABLE
    assert huge.reason.startswith(
        "needs 85.0 GB but the largest GPU allows 20.4 GB (85% of 24.0 GB)"
    )
    assert where(result, "det") == (Outcome.GPU, Slot("gpu-a", 0))
    big_cpu = plan(ONE_24, [d("huge", 85, cpu_memory_gib=90.0)]).placements["ns/huge"]
    assert big_cpu.outcome == Outcome.CPU


def test_external_and_cpu_policy_need_no_gpu() -> None:
    result = plan([], [d("api", 0, external=True), d("cpu", 2, device_policy=CPU_ONLY)])
    assert result.placements["ns/api"].outcome == Outcome.EXTERNAL
    assert result.placements["ns/cpu"].outcome == Outcome.CPU
    assert result.placements["ns/cpu"].reason == "device policy cpu: runs on the CPU"


def test_without_gpus_every_gpu_model_says_so() -> None:
    p = plan([], [d("det", 0.5)]).placements["ns/det"]
    assert p.outcome == Outcome.UNSCHEDULABLE
    assert p.reason.startswith("no schedulable GPU in the cluster")


def test_current_placement_that_fits_stays() -> None:
    gpus = [Gpu("a", 0, 24.0), Gpu("b", 0, 24.0)]
    # Best fit would put both on one GPU; the one already on b stays there.
    result = plan(gpus, [d("x", 4, current=Slot("b", 0)), d("y", 4)])
    assert where(result, "x") == (Outcome.GPU, Slot("b", 0))
    assert result.placements["ns/x"].reason.startswith("stays on b GPU 0")
    assert where(result, "y") == (Outcome.GPU, Slot("b", 0))  # best fit: the GPU in use


def test_current_placement_moves_when_its_gpu_is_gone_or_too_small() -> None:
    gpus = [Gpu("a", 0, 24.0), Gpu("b", 0, 10.0)]
    gone = plan(gpus, [d("x", 4, current=Slot("c", 0))]).placements["ns/x"]
    assert gone.slot == Slot("b", 0)  # the smallest free GPU that holds it
    assert gone.reason.startswith("moved from c GPU 0 (no longer a usable GPU) to b GPU 0")
    # b's capacity shrank below what both need: the higher-ranked one stays.
    demands = [
        d("hi", 6, current=Slot("b", 0), priority=200),
        d("lo", 3, current=Slot("b", 0)),
    ]
    result = plan(gpus, demands, threshold=0.8)
    assert where(result, "hi") == (Outcome.GPU, Slot("b", 0))
    lo = result.placements["ns/lo"]
    assert lo.slot == Slot("a", 0) and "no longer room there" in lo.reason
    was_cpu = plan(gpus, [d("x", 1, current=Slot("n"))]).placements["ns/x"]
    assert was_cpu.outcome == Outcome.GPU and "it ran on the CPU of n" in was_cpu.reason


def test_higher_priority_evicts_the_least_recently_used_lower_one() -> None:
    gpus = [Gpu("a", 0, 10.0)]  # capacity 8
    running = [
        d("old", 3, current=Slot("a", 0), last_used=100.0),
        d("recent", 3, current=Slot("a", 0), last_used=900.0),
        d("vip", 2, current=Slot("a", 0), priority=500, last_used=1.0),
    ]
    result = plan(gpus, [*running, d("urgent", 3, priority=300)], threshold=0.8)
    assert where(result, "urgent") == (Outcome.GPU, Slot("a", 0))
    assert "evicted ns/old" in result.placements["ns/urgent"].reason
    old = result.placements["ns/old"]
    assert old.outcome == Outcome.EVICTED
    assert old.reason.startswith(
        "evicted from a GPU 0 to make room for ns/urgent (priority 300 over 100)"
    )
    assert where(result, "recent") == (Outcome.GPU, Slot("a", 0))
    assert where(result, "vip") == (Outcome.GPU, Slot("a", 0))


def test_the_least_recently_used_goes_whichever_gpu_it_is_on() -> None:
    gpus = [Gpu("g", 0, 24.0), Gpu("g", 1, 24.0), Gpu("h", 0, 80.0)]
    running = [
        d("b", 19, current=Slot("g", 0), priority=10, last_used=200.0),
        d("a", 19, current=Slot("g", 1), priority=10, last_used=100.0),
        d("c", 60, current=Slot("h", 0), priority=10, last_used=200.0),
    ]
    result = plan(gpus, [*running, d("vip", 19, priority=500)], threshold=0.8)
    assert where(result, "vip") == (Outcome.GPU, Slot("g", 1))
    assert result.placements["ns/a"].outcome == Outcome.EVICTED
    assert where(result, "b") == (Outcome.GPU, Slot("g", 0))


def test_never_evicts_a_higher_priority_one() -> None:
    running = [d("vip", 7, current=Slot("a", 0), priority=500)]
    result = plan([Gpu("a", 0, 10.0)], [*running, d("new", 3, priority=100)], threshold=0.8)
    assert where(result, "vip") == (Outcome.GPU, Slot("a", 0))
    assert result.placements["ns/new"].outcome == Outcome.UNSCHEDULABLE


def test_equal_priority_evicts_only_a_less_recently_used_one() -> None:
    gpus = [Gpu("a", 0, 10.0)]
    running = d("idle", 6, current=Slot("a", 0), last_used=10.0)
    used_later = plan(gpus, [running, d("busy", 6, last_used=20.0)], threshold=0.8)
    assert where(used_later, "busy") == (Outcome.GPU, Slot("a", 0))
    assert used_later.placements["ns/idle"].reason.endswith(
        "(equal priority 100, used more recently); no other GPU has room for 6.0 GB; "
        "its option has no cpu_memory_gb, so it cannot run on the CPU"
    )
    never_used = plan(gpus, [running, d("fresh", 6)], threshold=0.8)
    assert where(never_used, "idle") == (Outcome.GPU, Slot("a", 0))
    assert never_used.placements["ns/fresh"].outcome == Outcome.UNSCHEDULABLE


def test_an_evicted_model_moves_to_another_gpu_with_room() -> None:
    gpus = [Gpu("a", 0, 10.0), Gpu("b", 0, 5.0)]  # capacities 8 and 4
    result = plan(
        gpus, [d("small", 3, current=Slot("a", 0)), d("big", 7, priority=200)], threshold=0.8
    )
    assert where(result, "big") == (Outcome.GPU, Slot("a", 0))
    small = result.placements["ns/small"]
    assert small.slot == Slot("b", 0)
    assert small.reason.startswith("moved from a GPU 0 to b GPU 0 to make room for ns/big")


def test_an_earlier_eviction_keeps_its_outcome() -> None:
    running = d("vip", 7, current=Slot("a", 0), priority=500)
    result = plan([Gpu("a", 0, 10.0)], [running, d("old", 3, was_evicted=True)], threshold=0.8)
    assert result.placements["ns/old"].outcome == Outcome.EVICTED


@pytest.mark.parametrize("mode", [SharingMode.WHOLE, SharingMode.MIG])
def test_whole_gpu_modes_put_one_model_per_gpu_on_the_smallest_that_fits(mode: SharingMode) -> None:
    gpus = [Gpu("a", 0, 80.0), Gpu("b", 0, 24.0), Gpu("b", 1, 24.0)]
    result = plan(
        gpus,
        [d("x", 1), d("y", 1), d("z", 30), d("w", 1, priority=50)],
        threshold=0.8,
        sharing=mode,
    )
    assert where(result, "z") == (Outcome.GPU, Slot("a", 0))
    assert {where(result, k)[1] for k in ("x", "y")} == {Slot("b", 0), Slot("b", 1)}
    w = result.placements["ns/w"]
    assert w.outcome == Outcome.UNSCHEDULABLE
    assert w.reason.startswith("every GPU that can hold 1.0 GB is taken (one model per GPU)")
    assert all(len(g.keys) == 1 for g in result.gpus)


def test_whole_gpu_eviction_takes_the_gpu_of_a_lower_priority_model() -> None:
    gpus = [Gpu("a", 0, 24.0)]
    running = d("low", 1, current=Slot("a", 0), priority=10)
    result = plan(gpus, [running, d("high", 10, priority=20)], sharing="whole")
    assert where(result, "high") == (Outcome.GPU, Slot("a", 0))
    assert result.placements["ns/low"].outcome == Outcome.EVICTED


def test_first_fit_wins_where_best_fit_would_open_one_more_gpu() -> None:
    # Best fit puts 36 on the tighter GPU (room 39) and later needs a third GPU
    # for 14; first fit packs all six into two. The plan keeps the better one.
    gpus = [Gpu("a", 0, 120.0), *(Gpu("b", i, 100.0) for i in range(3))]
    sizes = [70, 36, 18, 14, 61, 20]
    result = plan(gpus, [d(f"m{i}", float(s)) for i, s in enumerate(sizes)], threshold=1.0)
    assert result.gpus_used == 2
    assert all(p.outcome == Outcome.GPU for p in result.placements.values())


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate demand key: ns/x"):
        plan(ONE_24, [d("x", 1), d("x", 2)])
    with pytest.raises(ValueError, match="duplicate GPU"):
        plan([Gpu("a", 0, 8.0), Gpu("a", 0, 8.0)], [])
    with pytest.raises(ValueError, match="negative"):
        plan(ONE_24, [d("x", -1)])
    with pytest.raises(ValueError, match="threshold"):
        plan(ONE_24, [], threshold=0)
    with pytest.raises(ValueError):
        plan(ONE_24, [], sharing="shared")


def test_result_accessors() -> None:
    result = plan([Gpu("a", 0, 10.0), Gpu("a", 1, 10.0)], [d("x", 2), d("y", 0, external=True)])
    assert result.gpus_used == 1
    assert [p.key for p in result.with_outcome(Outcome.EXTERNAL)] == ["ns/y"]
    assert result.spare_gib("a", None) == 0.0 and result.spare_gib("zz", 0) == 0.0
    assert result.usage("a", 1) is not None and result.usage("a", 1).keys == ()  # type: ignore[union-attr]


# --- properties ---------------------------------------------------------------------

NODES = ["n1", "n2", "n3"]
MEMORIES = [4.0, 8.0, 16.0, 24.0, 40.0, 80.0]
SIZES = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 33.0, 70.0]


@st.composite
def gpu_sets(draw: st.DrawFn, homogeneous: bool = False) -> list[Gpu]:
    count = draw(st.integers(0, 7))
    memory = draw(st.sampled_from(MEMORIES))
    gpus = {}
    for i in range(count):
        node = draw(st.sampled_from(NODES))
        mem = memory if homogeneous else draw(st.sampled_from(MEMORIES))
        gpus[(node, i)] = Gpu(node, i, mem)
    return list(gpus.values())


@st.composite
def demand_sets(draw: st.DrawFn, gpus: list[Gpu], fresh: bool = False) -> list[Demand]:
    slots = [Slot(g.node, g.index) for g in gpus] + [Slot("gone", 0), Slot("n1")]
    out = []
    for i in range(draw(st.integers(0, 14))):
        out.append(
            Demand(
                key=f"ns{i % 3}/sel-{i}",
                task=f"t{i}",
                model="m",
                vram_gib=draw(st.sampled_from(SIZES)),
                priority=100 if fresh else draw(st.sampled_from([0, 50, 100, 100, 200])),
                last_used=0.0 if fresh else draw(st.sampled_from([0.0, 1.0, 2.0, 3.0])),
                device_policy=AUTO
                if fresh
                else draw(st.sampled_from([AUTO, AUTO, GPU_ONLY, CPU_ONLY])),
                cpu_memory_gib=None if fresh else draw(st.sampled_from([None, 1.0])),
                current=None if fresh else draw(st.one_of(st.none(), st.sampled_from(slots))),
                external=not fresh and i % 4 == 0 and draw(st.booleans()),
            )
        )
    return out


@st.composite
def problems(draw: st.DrawFn, fresh: bool = False, homogeneous: bool = False) -> tuple:
    gpus = draw(gpu_sets(homogeneous))
    demands = draw(demand_sets(gpus, fresh))
    threshold = draw(st.sampled_from([0.5, 0.8, 0.85, 1.0]))
    mode = SharingMode.TIME_SLICED if fresh else draw(st.sampled_from(list(SharingMode)))
    return gpus, demands, threshold, mode


def _whole(mode: SharingMode) -> bool:
    return mode in (SharingMode.WHOLE, SharingMode.MIG)


def _decisions(result: Plan) -> dict[str, tuple[Outcome, Slot | None]]:
    return {k: (p.outcome, p.slot) for k, p in result.placements.items()}


@settings(max_examples=400, deadline=None)
@given(problems())
def test_never_above_the_threshold_and_usage_is_consistent(problem: tuple) -> None:
    gpus, demands, threshold, mode = problem
    result = plan(gpus, demands, threshold=threshold, sharing=mode)
    by_key = {x.key: x for x in demands}
    assert set(result.placements) == set(by_key)
    for usage in result.gpus:
        assert usage.used_gib <= threshold * usage.memory_gib + EPSILON
        assert usage.used_gib == pytest.approx(sum(by_key[k].vram_gib for k in usage.keys))
        if _whole(mode):
            assert len(usage.keys) <= 1
        for key in usage.keys:
            assert result.placements[key].slot == Slot(usage.node, usage.index)
    for key, p in result.placements.items():
        demand = by_key[key]
        assert p.reason
        assert (p.outcome == Outcome.GPU) == (p.slot is not None)
        if p.outcome == Outcome.GPU:
            assert demand.wants_gpu
        if p.outcome == Outcome.CPU:
            assert demand.device_policy == CPU_ONLY or demand.cpu_allowed
        if demand.external:
            assert p.outcome == Outcome.EXTERNAL
        if demand.device_policy == CPU_ONLY and not demand.external:
            assert p.outcome == Outcome.CPU


@settings(max_examples=400, deadline=None)
@given(problems())
def test_priority_respected(problem: tuple) -> None:
    """A model left without a GPU could not have one even by evicting all it outranks."""
    gpus, demands, threshold, mode = problem
    result = plan(gpus, demands, threshold=threshold, sharing=mode)
    by_key = {x.key: x for x in demands}
    for h in demands:
        if not h.wants_gpu or result.placements[h.key].outcome == Outcome.GPU:
            continue
        for usage in result.gpus:
            if usage.capacity_gib < h.vram_gib - EPSILON:
                continue
            kept = [by_key[k] for k in usage.keys if not by_key[k].rank < h.rank]
            if _whole(mode):
                assert kept, (h, usage)
            else:
                room = usage.capacity_gib - sum(k.vram_gib for k in kept)
                assert room < h.vram_gib - EPSILON, (h, usage)


@settings(max_examples=300, deadline=None)
@given(problems(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_input_order(problem: tuple, rng: random.Random) -> None:
    gpus, demands, threshold, mode = problem
    first = plan(gpus, demands, threshold=threshold, sharing=mode)
    shuffled_demands, shuffled_gpus = list(demands), list(gpus)
    rng.shuffle(shuffled_demands)
    rng.shuffle(shuffled_gpus)
    again = plan(shuffled_gpus, shuffled_demands, threshold=threshold, sharing=mode)
    assert again == first


def _applied(result: Plan, demands: list[Demand]) -> list[Demand]:
    """The demands as the next plan sees them once this one was applied."""
    out = []
    for x in demands:
        p = result.placements[x.key]
        current = p.slot if p.outcome == Outcome.GPU else None
        out.append(replace(x, current=current, was_evicted=p.outcome == Outcome.EVICTED))
    return out


@settings(max_examples=400, deadline=None)
@given(problems())
def test_stable_a_plan_once_applied_is_planned_again_unchanged(problem: tuple) -> None:
    gpus, demands, threshold, mode = problem
    first = plan(gpus, demands, threshold=threshold, sharing=mode)
    second = plan(gpus, _applied(first, demands), threshold=threshold, sharing=mode)
    assert _decisions(second) == _decisions(first)


@settings(max_examples=300, deadline=None)
@given(problems(), st.data())
def test_stable_under_removals_and_lower_ranked_arrivals(
    problem: tuple, data: st.DataObject
) -> None:
    gpus, demands, threshold, mode = problem
    first = plan(gpus, demands, threshold=threshold, sharing=mode)
    applied = _applied(first, demands)
    on_gpu = {k for k, p in first.placements.items() if p.outcome == Outcome.GPU}

    # Removing selections moves the others only to make room for one that had no GPU
    # (removing a model may leave just enough room for it), of equal or higher priority.
    keep = (
        data.draw(st.lists(st.sampled_from(applied), unique_by=lambda x: x.key)) if applied else []
    )
    fewer = plan(gpus, keep, threshold=threshold, sharing=mode)
    for x in keep:
        if x.key in on_gpu and fewer.placements[x.key].slot != first.placements[x.key].slot:
            reason = fewer.placements[x.key].reason
            if f"so that every model of priority {x.priority} fits" in reason:
                continue  # an exact packing of its tier, now that there is room for all of it
            by = [y for y in keep if f"to make room for {y.key} " in reason]
            assert by and by[0].key not in on_gpu and by[0].priority >= x.priority, reason

    # New selections ranked below every existing one change nothing for them.
    low = min((x.rank for x in demands), default=(0, 0.0))
    newcomers = [
        d(f"new-{i}", size, priority=low[0] - 1)
        for i, size in enumerate(data.draw(st.lists(st.sampled_from(SIZES), max_size=5)))
    ]
    more = plan(gpus, applied + newcomers, threshold=threshold, sharing=mode)
    for x in demands:
        assert _decisions(more)[x.key] == _decisions(first)[x.key]


def test_removing_a_model_can_leave_room_for_one_that_outranks_a_running_one() -> None:
    gpus = [Gpu("n1", 0, 16.0)]
    other = d("other", 1.0, priority=100, current=Slot("n1", 0))
    low = d("low", 1.0, priority=0, current=Slot("n1", 0))
    big = d("big", 12.0, priority=0, last_used=1.0)
    first = plan(gpus, [other, low, big], threshold=0.8)
    assert first.placements["ns/big"].outcome == Outcome.UNSCHEDULABLE
    fewer = plan(gpus, [low, big], threshold=0.8)
    assert where(fewer, "big") == (Outcome.GPU, Slot("n1", 0))
    assert fewer.placements["ns/low"].reason.startswith(
        "evicted from n1 GPU 0 to make room for ns/big "
    )


def first_fit_decreasing(gpus: list[Gpu], sizes: list[float], threshold: float) -> tuple[int, int]:
    """Reference FFD: (items left over, GPUs used); GPUs largest first, then by name."""
    order = sorted(gpus, key=lambda g: (-g.memory_gib, g.node, g.index))
    room = [threshold * g.memory_gib for g in order]
    used = [False] * len(order)
    left = 0
    for size in sorted(sizes, reverse=True):
        for i, free in enumerate(room):
            if free >= size - EPSILON:
                room[i] -= size
                used[i] = True
                break
        else:
            left += 1
    return left, sum(used)


@settings(max_examples=500, deadline=None)
@given(st.one_of(problems(fresh=True, homogeneous=True), problems(fresh=True)))
def test_never_more_gpus_than_first_fit_decreasing(problem: tuple) -> None:
    gpus, demands, threshold, _ = problem
    result = plan(gpus, demands, threshold=threshold)
    left = sum(1 for p in result.placements.values() if p.outcome != Outcome.GPU)
    mine = (left, result.gpus_used)
    assert mine <= first_fit_decreasing(gpus, [x.vram_gib for x in demands], threshold)


def test_ten_thousand_demands_on_a_thousand_gpus_with_node_capacities() -> None:
    """The large case of bench/placement.py (its time is a benchmark figure, not a test)."""
    rng = random.Random(7)
    gpus = [Gpu(f"node-{i // 8:03d}", i % 8, rng.choice([24.0, 40.0, 80.0])) for i in range(1000)]
    nodes = [NodeCapacity(f"node-{n:03d}", 64_000, 512 * 1024, 110, 64) for n in range(125)]
    demands = [
        Demand(
            f"ns-{i % 50}/sel-{i}",
            f"t{i}",
            "m",
            rng.choice(SIZES[1:12]),
            priority=rng.choice([50, 100, 200]),
            cpu_millis=rng.choice([500, 1000, 2000]),
            memory_mib=rng.choice([1024, 4096]),
        )
        for i in range(10_000)
    ]
    result = plan(gpus, demands, nodes=nodes)
    assert len(result.placements) == 10_000
    assert len(result.with_outcome(Outcome.GPU)) > 5_000
    assert_within_capacities(result, nodes, demands, 0.8)


# --- joint packing, moves and node capacities ----------------------------------------

LOCAL_GPUS = [Gpu("gpu-0", 0, 24.0), Gpu("gpu-0", 1, 24.0), Gpu("gpu-1", 0, 80.0)]
LOCAL_NODES = [
    NodeCapacity("cpu-0", 2000, 16384, 110),
    NodeCapacity("gpu-0", 2000, 16384, 110, gpu_slots=16, has_gpu=True),
    NodeCapacity("gpu-1", 2000, 16384, 110, gpu_slots=8, has_gpu=True),
]


def pod(key: str, vram: float, **kw: object) -> Demand:
    """A demand with the requests of a pytorch model pod (500m CPU, 2 GiB)."""
    return d(key, vram, cpu_millis=500, memory_mib=2048, **kw)


VIP = [
    pod("big", 63.9, priority=1000),
    pod("s1", 19.1, priority=1000),
    pod("s2", 19.1, priority=1000),
]


def test_selections_arriving_together_find_the_only_packing() -> None:
    result = plan(LOCAL_GPUS, VIP, threshold=0.8, nodes=LOCAL_NODES)
    assert where(result, "big") == (Outcome.GPU, Slot("gpu-1", 0))
    assert {where(result, "s1")[1], where(result, "s2")[1]} == {Slot("gpu-0", 0), Slot("gpu-0", 1)}
    assert result.moves == ()


def test_small_ones_first_do_not_take_the_large_gpu() -> None:
    small = plan(LOCAL_GPUS, [pod("s1", 19.1, priority=1000)], nodes=LOCAL_NODES)
    assert where(small, "s1") == (Outcome.GPU, Slot("gpu-0", 0))  # the smallest GPU that holds it


def test_running_models_move_to_make_room_and_the_moves_are_reported() -> None:
    # An earlier plan put both 19.1 GiB models on the 80 GiB GPU.
    running = [replace(x, current=Slot("gpu-1", 0)) for x in VIP[1:]]
    result = plan(LOCAL_GPUS, [VIP[0], *running], threshold=0.8, nodes=LOCAL_NODES)
    assert where(result, "big") == (Outcome.GPU, Slot("gpu-1", 0))
    assert {where(result, "s1")[1], where(result, "s2")[1]} == {Slot("gpu-0", 0), Slot("gpu-0", 1)}
    assert [(m.key, m.source) for m in result.moves] == [
        ("ns/s1", Slot("gpu-1", 0)),
        ("ns/s2", Slot("gpu-1", 0)),
    ]
    assert result.moves[0].target == result.placements["ns/s1"].slot
    assert result.moves[0].reason.startswith(
        "moved from gpu-1 GPU 0 to gpu-0 GPU 0 to make room for ns/big"
    )


def test_moves_are_bounded_per_plan() -> None:
    running = [replace(x, current=Slot("gpu-1", 0)) for x in VIP[1:]]
    result = plan(LOCAL_GPUS, [VIP[0], *running], threshold=0.8, nodes=LOCAL_NODES, max_moves=1)
    assert len(result.moves) <= 1
    assert result.placements["ns/big"].outcome == Outcome.UNSCHEDULABLE
    again = plan(LOCAL_GPUS, [VIP[0], *running], threshold=0.8, max_moves=0)
    assert again.moves == () and again.placements["ns/big"].outcome == Outcome.UNSCHEDULABLE


def test_never_moves_a_higher_priority_model() -> None:
    running = [replace(x, current=Slot("gpu-1", 0)) for x in VIP[1:]]
    result = plan(LOCAL_GPUS, [pod("big", 63.9, priority=500), *running], nodes=LOCAL_NODES)
    assert result.placements["ns/big"].outcome == Outcome.UNSCHEDULABLE
    assert result.moves == ()


def test_a_tier_that_first_fit_decreasing_cannot_pack_is_packed_exactly() -> None:
    gpus = [Gpu("a", 0, 10.0), Gpu("b", 0, 10.0)]
    demands = [d(f"x{i}", float(s)) for i, s in enumerate([4, 4, 3, 3, 3, 3])]
    result = plan(gpus, demands, threshold=1.0)
    assert all(p.outcome == Outcome.GPU for p in result.placements.values())


def test_node_cpu_is_counted_against_pod_requests() -> None:
    # Room for two model pods' CPU on gpu-0 and one on gpu-1, whatever the GPUs hold.
    nodes = [replace(LOCAL_NODES[1], cpu_millis=1000), replace(LOCAL_NODES[2], cpu_millis=500)]
    result = plan(LOCAL_GPUS, [pod(f"t{i}", 1.0) for i in range(3)], nodes=nodes)
    assert Counter(p.node for p in result.placements.values()) == {"gpu-0": 2, "gpu-1": 1}
    full = plan(LOCAL_GPUS[:2], [pod(f"t{i}", 1.0) for i in range(3)], nodes=nodes[:1])
    left = full.placements["ns/t2"]
    assert left.outcome == Outcome.UNSCHEDULABLE
    # The node's CPU is named as the limit, not a GPU's memory (issue 28: an Event said
    # "no GPU has 1.0 GB free" when the CPU was short).
    assert left.reason.startswith(
        "node gpu-0's CPU is the limit: gpu-0 GPU 0 has room for its 1.0 GB below the 80% "
        "threshold, but gpu-0 has 0 CPU free and its pod needs 0.5 CPU"
    )
    assert "no GPU has" not in left.reason


def test_gpu_slots_memory_and_pods_per_node_are_counted() -> None:
    demands = [pod(f"t{i}", 1.0) for i in range(3)]
    for limit in (
        {"gpu_slots": 2},
        {"memory_mib": 4096},
        {"pods": 2},
    ):
        node = replace(LOCAL_NODES[1], **limit)  # type: ignore[arg-type]
        result = plan(LOCAL_GPUS[:2], demands, nodes=[node])
        assert len(result.with_outcome(Outcome.GPU)) == 2, limit


def test_untolerated_taints_and_excluded_nodes_are_avoided() -> None:
    tainted = replace(LOCAL_NODES[2], tolerated=False)
    result = plan(LOCAL_GPUS, [pod("big", 60.0)], nodes=[LOCAL_NODES[1], tainted])
    assert result.placements["ns/big"].outcome == Outcome.UNSCHEDULABLE
    refused = pod("s1", 10.0, excluded_nodes=frozenset({"gpu-0"}))
    again = plan(LOCAL_GPUS, [refused], nodes=LOCAL_NODES)
    assert where(again, "s1") == (Outcome.GPU, Slot("gpu-1", 0))
    nowhere = plan(LOCAL_GPUS, [replace(refused, excluded_nodes=frozenset({"gpu-0", "gpu-1"}))])
    p = nowhere.placements["ns/s1"]
    assert p.outcome == Outcome.UNSCHEDULABLE
    assert "avoiding gpu-0, gpu-1: the scheduler refused it" in p.reason


def test_cpu_pods_go_to_nodes_without_gpus_with_room() -> None:
    demands = [pod("c1", 1, device_policy=CPU_ONLY), pod("c2", 1, device_policy=CPU_ONLY)]
    nodes = [replace(LOCAL_NODES[0], cpu_millis=500), *LOCAL_NODES[1:]]
    result = plan(LOCAL_GPUS, demands, nodes=nodes)
    assert where(result, "c1") == (Outcome.CPU, Slot("cpu-0"))
    assert where(result, "c2") == (Outcome.CPU, Slot("gpu-0"))  # the plain node is full
    none = plan([], demands, nodes=[nodes[0]])
    assert none.placements["ns/c2"].outcome == Outcome.UNSCHEDULABLE
    assert (
        "no node has room for its pod (0.5 CPU, 2.0 GB memory)" in none.placements["ns/c2"].reason
    )
    assert (
        plan([], demands).placements["ns/c1"].node is None
    )  # without nodes: the scheduler's choice


def test_a_node_that_pulls_nothing_takes_only_pods_whose_images_it_holds() -> None:
    model_pod = frozenset({"ghcr.io/o/model-pod:1"})
    held = NodeCapacity("container", 2000, 16384, 110, images=model_pod)
    nodes = [held, *LOCAL_NODES]
    cpu = dict(device_policy=CPU_ONLY, images=model_pod)
    # It holds the image and has no GPU: CPU pods go there first ("container" < "cpu-0").
    result = plan(LOCAL_GPUS, [pod("c1", 1, **cpu)], nodes=nodes)
    assert where(result, "c1") == (Outcome.CPU, Slot("container"))
    # A pod with an image it lacks (or the fetcher's too), or no known image, goes elsewhere.
    for images in (frozenset({"ghcr.io/o/other:1"}), model_pod | {"x:1"}, frozenset()):
        other = plan(LOCAL_GPUS, [pod("c2", 1, device_policy=CPU_ONLY, images=images)], nodes=nodes)
        assert where(other, "c2") == (Outcome.CPU, Slot("cpu-0")), images
    # Its room counts as on any node: the third pod of 1 CPU finds it full.
    three = [d(f"c{i}", 1, **cpu, cpu_millis=1000, memory_mib=2048) for i in range(3)]
    placed = plan(LOCAL_GPUS, three, nodes=nodes)
    assert Counter(p.node for p in placed.placements.values()) == {"container": 2, "cpu-0": 1}
    # GPUs on such a node take only the pods whose images it holds, too.
    gpu_node = replace(LOCAL_NODES[1], images=model_pod)
    gpus = [g for g in LOCAL_GPUS if g.node == "gpu-0"]
    lacking = plan(gpus, [pod("g1", 1.0, images=frozenset({"y:1"}))], nodes=[gpu_node])
    assert lacking.placements["ns/g1"].outcome == Outcome.UNSCHEDULABLE
    holding = plan(gpus, [pod("g1", 1.0, images=model_pod)], nodes=[gpu_node])
    assert holding.placements["ns/g1"].outcome == Outcome.GPU


# --- properties with node capacities ---------------------------------------------------

NODE_NAMES = ["n1", "n2", "n3"]
GPU_MEMORIES = [8.0, 16.0, 24.0, 80.0]
TIER_SIZES = [0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 19.1, 30.0, 63.9]


@st.composite
def node_problems(draw: st.DrawFn, fresh: bool = False) -> tuple:
    """Nodes with CPU, memory, pods and GPU slots, several GPUs each; demands with requests."""
    nodes, gpus = [], []
    for name in NODE_NAMES[: draw(st.integers(1, 3))]:
        count = draw(st.integers(0, 3))
        nodes.append(
            NodeCapacity(
                name,
                cpu_millis=draw(st.sampled_from([500, 1000, 2000, 4000])),
                memory_mib=draw(st.sampled_from([2048, 4096, 16384])),
                pods=draw(st.sampled_from([1, 2, 3, 110])),
                gpu_slots=draw(st.sampled_from([1, 2, 8 * count or 1])),
                tolerated=draw(st.sampled_from([True, True, True, False])),
                has_gpu=count > 0,
            )
        )
        mem = draw(st.sampled_from(GPU_MEMORIES))
        gpus += [Gpu(name, i, mem) for i in range(count)]
    slots = [Slot(g.node, g.index) for g in gpus]
    demands = []
    for i in range(draw(st.integers(0, 6))):
        demands.append(
            Demand(
                key=f"ns{i % 2}/sel-{i}",
                task=f"t{i}",
                model="m",
                vram_gib=draw(st.sampled_from(TIER_SIZES)),
                priority=draw(st.sampled_from([100, 500, 1000])),
                last_used=0.0 if fresh else draw(st.sampled_from([0.0, 1.0])),
                device_policy=draw(st.sampled_from([AUTO, AUTO, AUTO, GPU_ONLY, CPU_ONLY])),
                cpu_memory_gib=draw(st.sampled_from([None, 1.0])),
                current=None
                if fresh or not slots
                else draw(st.one_of(st.none(), st.sampled_from(slots))),
                cpu_millis=draw(st.sampled_from([250, 500, 1000])),
                memory_mib=draw(st.sampled_from([512, 1024, 2048])),
                excluded_nodes=frozenset(draw(st.lists(st.sampled_from(NODE_NAMES), max_size=1))),
            )
        )
    threshold = draw(st.sampled_from([0.8, 1.0]))
    mode = draw(st.sampled_from([SharingMode.TIME_SLICED, SharingMode.WHOLE]))
    return gpus, nodes, demands, threshold, mode


def top_tier_fits(
    gpus: list[Gpu],
    nodes: list[NodeCapacity],
    demands: list[Demand],
    threshold: float,
    mode: SharingMode,
) -> tuple[list[Demand], bool]:
    """Brute force: can every GPU-wanting demand of the highest priority have a GPU at once?"""
    wanting = [x for x in demands if x.wants_gpu]
    if not wanting:
        return [], False
    top = max(x.priority for x in wanting)
    tier = [x for x in wanting if x.priority == top]
    by_name = {n.name: n for n in nodes}
    for assignment in itertools.product(range(len(gpus)), repeat=len(tier)):
        used: Counter[int] = Counter()
        memory: dict[int, float] = {}
        node_use: dict[str, list[int]] = {}
        ok = True
        for x, g in zip(tier, assignment, strict=True):
            gpu = gpus[g]
            node = by_name.get(gpu.node)
            if node is None or not node.tolerated or gpu.node in x.excluded_nodes:
                ok = False
                break
            used[g] += 1
            memory[g] = memory.get(g, 0.0) + x.vram_gib
            use = node_use.setdefault(gpu.node, [0, 0, 0, 0])
            for k, n in enumerate((x.cpu_millis, x.memory_mib, 1, 1)):
                use[k] += n
        if not ok:
            continue
        if any(memory[g] > threshold * gpus[g].memory_gib + EPSILON for g in memory):
            continue
        if mode == SharingMode.WHOLE and any(n > 1 for n in used.values()):
            continue
        limits = {n.name: (n.cpu_millis, n.memory_mib, n.pods, n.gpu_slots) for n in nodes}
        if all(
            all(u <= lim for u, lim in zip(use, limits[name], strict=True))
            for name, use in node_use.items()
        ):
            return tier, True
    return tier, False


def assert_within_capacities(
    result: Plan, nodes: list[NodeCapacity], demands: list[Demand], threshold: float
) -> None:
    by_key = {x.key: x for x in demands}
    for usage in result.gpus:
        assert usage.used_gib <= threshold * usage.memory_gib + EPSILON
    for node in nodes:
        here = [(by_key[k], p) for k, p in result.placements.items() if p.node == node.name]
        if not node.tolerated:
            assert not here
        assert sum(x.cpu_millis for x, _ in here) <= node.cpu_millis
        assert sum(x.memory_mib for x, _ in here) <= node.memory_mib
        assert len(here) <= node.pods
        assert sum(1 for _, p in here if p.outcome == Outcome.GPU) <= node.gpu_slots
        assert not any(node.name in x.excluded_nodes for x, _ in here)


@settings(max_examples=400, deadline=None)
@given(node_problems())
def test_never_beyond_a_nodes_cpu_memory_pods_or_gpu_slots(problem: tuple) -> None:
    gpus, nodes, demands, threshold, mode = problem
    result = plan(gpus, demands, threshold=threshold, sharing=mode, nodes=nodes)
    assert_within_capacities(result, nodes, demands, threshold)
    for p in result.placements.values():
        if p.outcome == Outcome.CPU:
            assert p.node is not None  # with node capacities, CPU pods have a node too


@settings(max_examples=400, deadline=None)
@given(node_problems())
def test_where_the_highest_priority_fits_the_planner_places_all_of_it(problem: tuple) -> None:
    gpus, nodes, demands, threshold, mode = problem
    tier, fits = top_tier_fits(gpus, nodes, demands, threshold, mode)
    result = plan(gpus, demands, threshold=threshold, sharing=mode, nodes=nodes)
    if fits:
        assert all(result.placements[x.key].outcome == Outcome.GPU for x in tier), result
    assert len(result.moves) <= MAX_MOVES


def _arrive(
    gpus: list[Gpu],
    nodes: list[NodeCapacity],
    order: list[Demand],
    threshold: float,
    mode: SharingMode,
) -> tuple[Plan, list[Demand]]:
    """The demands arrive one at a time; each plan is applied before the next arrives."""
    present: list[Demand] = []
    result = plan(gpus, [], threshold=threshold, sharing=mode, nodes=nodes)
    for x in order:
        present = [*_applied(result, present), x]
        result = plan(gpus, present, threshold=threshold, sharing=mode, nodes=nodes)
        assert_within_capacities(result, nodes, present, threshold)
    return result, present


@settings(max_examples=300, deadline=None)
@given(node_problems(fresh=True), st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_what_gets_placed(problem: tuple, rng: random.Random) -> None:
    gpus, nodes, demands, threshold, mode = problem
    tier, fits = top_tier_fits(gpus, nodes, demands, threshold, mode)
    together = plan(gpus, demands, threshold=threshold, sharing=mode, nodes=nodes)
    smallest_first = sorted(demands, key=lambda x: (x.vram_gib, x.key))
    shuffled = list(demands)
    rng.shuffle(shuffled)
    for order in (smallest_first, shuffled):
        result, _ = _arrive(gpus, nodes, order, threshold, mode)
        placed = {k for k, p in result.placements.items() if p.outcome == Outcome.GPU}
        jointly = {k for k, p in together.placements.items() if p.outcome == Outcome.GPU}
        if fits:
            top = {x.key for x in tier}
            assert top <= placed and top <= jointly
            assert placed & top == jointly & top


def test_mig_pods_take_no_nvidia_gpu_slot() -> None:
    node = replace(LOCAL_NODES[2], gpu_slots=0)  # MIG: the node advertises mig-* resources
    result = plan(LOCAL_GPUS[2:], [pod("x", 5.0)], nodes=[node], sharing=SharingMode.MIG)
    assert where(result, "x") == (Outcome.GPU, Slot("gpu-1", 0))
    sliced = plan(LOCAL_GPUS[2:], [pod("x", 5.0)], nodes=[node])
    assert sliced.placements["ns/x"].outcome == Outcome.UNSCHEDULABLE
