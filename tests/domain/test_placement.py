"""The placement planner: worked examples, then properties checked by hypothesis."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fovea.domain.gpus import Gpu
from fovea.domain.placement import EPSILON, Demand, Outcome, Plan, Slot, plan
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
    assert gone.slot == Slot("a", 0)
    assert gone.reason.startswith("moved from c GPU 0 (no longer a usable GPU) to a GPU 0")
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

    # Removing selections never moves the others.
    keep = (
        data.draw(st.lists(st.sampled_from(applied), unique_by=lambda x: x.key)) if applied else []
    )
    fewer = plan(gpus, keep, threshold=threshold, sharing=mode)
    for x in keep:
        if x.key in on_gpu:
            assert fewer.placements[x.key].slot == first.placements[x.key].slot

    # New selections ranked below every existing one change nothing for them.
    low = min((x.rank for x in demands), default=(0, 0.0))
    newcomers = [
        d(f"new-{i}", size, priority=low[0] - 1)
        for i, size in enumerate(data.draw(st.lists(st.sampled_from(SIZES), max_size=5)))
    ]
    more = plan(gpus, applied + newcomers, threshold=threshold, sharing=mode)
    for x in demands:
        assert _decisions(more)[x.key] == _decisions(first)[x.key]


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


def test_ten_thousand_demands_on_a_thousand_gpus_within_a_second() -> None:
    import time

    rng = random.Random(7)
    gpus = [Gpu(f"node-{i // 8:03d}", i % 8, rng.choice([24.0, 40.0, 80.0])) for i in range(1000)]
    demands = [
        Demand(
            f"ns-{i % 50}/sel-{i}",
            f"t{i}",
            "m",
            rng.choice(SIZES[1:12]),
            priority=rng.choice([50, 100, 200]),
        )
        for i in range(10_000)
    ]
    timings = []
    for _ in range(3):  # the best of three: the machine is shared
        start = time.perf_counter()
        result = plan(gpus, demands)
        timings.append(time.perf_counter() - start)
    assert len(result.placements) == 10_000
    assert min(timings) <= 1.0, f"plan took {min(timings):.2f} s"
