"""Benchmark of the placement planner (`fovea.domain.placement.plan`).

1. Plan time for 10,000 selections on 1,000 GPUs (target: <= 1 s), from
   scratch, re-planned with every selection already placed (the operator's
   steady state), and with whole-GPU sharing.
2. GPUs used against first-fit-decreasing (target: never more) and against
   the optimum found by exhaustive search (target: within one GPU on at
   least 95% of small random instances), for GPUs of one size and of mixed
   sizes.

Run: `.venv/bin/python bench/placement.py` (about a minute on two cores).
Deterministic: every instance comes from a seeded generator.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import replace

from fovea.domain.gpus import Gpu
from fovea.domain.placement import EPSILON, Demand, Outcome, Plan, plan
from fovea.domain.resources import SharingMode

# VRAM figures of real catalog options, GiB.
CATALOG_SIZES = [0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 8.0, 15.0, 16.0]
GPU_SIZES = [24.0, 40.0, 48.0, 80.0]


def large_instance(seed: int) -> tuple[list[Gpu], list[Demand]]:
    rng = random.Random(seed)
    gpus = [Gpu(f"node-{i // 8:03d}", i % 8, rng.choice(GPU_SIZES)) for i in range(1000)]
    demands = [
        Demand(
            key=f"ns-{i % 50:02d}/sel-{i:05d}",
            task=f"task-{i % 9}",
            model="m",
            vram_gib=rng.choice(CATALOG_SIZES),
            priority=rng.choice([50, 100, 100, 200]),
            last_used=float(rng.randrange(0, 10_000)),
            cpu_memory_gib=rng.choice([None, 2.0]),
        )
        for i in range(10_000)
    ]
    return gpus, demands


def timed(runs: int, fn: object) -> tuple[float, float, Plan]:
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    assert isinstance(result, Plan)
    return min(times), statistics.median(times), result


def bench_time(runs: int) -> None:
    gpus, demands = large_instance(1)
    print("Plan time, 10,000 selections x 1,000 GPUs (best / median of", runs, "runs)")
    best, median, first = timed(runs, lambda: plan(gpus, demands))
    print(f"  {'from scratch, time-sliced':27}{best:6.3f} s / {median:6.3f} s   {_summary(first)}")
    placed = [
        replace(d, current=first.placements[d.key].slot)
        if first.placements[d.key].outcome == Outcome.GPU
        else d
        for d in demands
    ]
    best, median, again = timed(runs, lambda: plan(gpus, placed))
    moved = sum(
        1
        for k, p in first.placements.items()
        if p.outcome == Outcome.GPU and again.placements[k].slot != p.slot
    )
    print(f"  {'re-plan, all placed':27}{best:6.3f} s / {median:6.3f} s   moved: {moved}")
    best, median, whole = timed(runs, lambda: plan(gpus, demands, sharing=SharingMode.WHOLE))
    print(f"  {'from scratch, whole GPUs':27}{best:6.3f} s / {median:6.3f} s   {_summary(whole)}")
    fits = demands[:3000]
    best, median, light = timed(runs, lambda: plan(gpus, fits))
    print(f"  {'3,000 that all fit':27}{best:6.3f} s / {median:6.3f} s   {_summary(light)}")


def _summary(result: Plan) -> str:
    counts = {o: 0 for o in Outcome}
    for p in result.placements.values():
        counts[p.outcome] += 1
    parts = ", ".join(f"{o.value} {n}" for o, n in counts.items() if n)
    return f"{parts}; GPUs used {result.gpus_used}"


def ffd_gpus(gpus: list[Gpu], sizes: list[float], threshold: float) -> int | None:
    """Textbook first-fit-decreasing; GPUs largest first. None if something does not fit."""
    room = [threshold * g.memory_gib for g in sorted(gpus, key=lambda g: -g.memory_gib)]
    used = [False] * len(room)
    for size in sorted(sizes, reverse=True):
        for i, free in enumerate(room):
            if free >= size - EPSILON:
                room[i] -= size
                used[i] = True
                break
        else:
            return None
    return sum(used)


def optimum_gpus(capacities: list[float], sizes: list[float]) -> int:
    """The fewest GPUs that hold every size: exhaustive search with pruning."""
    items = sorted(sizes, reverse=True)
    caps = sorted(capacities, reverse=True)
    best = len(caps) + 1
    suffix = [0.0] * (len(items) + 1)
    for i in range(len(items) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + items[i]

    def search(i: int, rooms: list[float], opened: int, unopened: list[float]) -> None:
        nonlocal best
        if opened >= best:
            return
        if i == len(items):
            best = opened
            return
        # Lower bound: what does not fit in the open rooms needs the largest unopened GPUs.
        spill = suffix[i] - sum(rooms)
        extra = 0
        for cap in unopened:
            if spill <= EPSILON:
                break
            spill -= cap
            extra += 1
        if spill > EPSILON or opened + extra >= best:
            return
        size = items[i]
        seen: set[float] = set()
        for j, room in enumerate(rooms):
            if room >= size - EPSILON and room not in seen:
                seen.add(room)
                rooms[j] -= size
                search(i + 1, rooms, opened, unopened)
                rooms[j] += size
        tried: set[float] = set()
        for k, cap in enumerate(unopened):
            if cap >= size - EPSILON and cap not in tried:
                tried.add(cap)
                search(i + 1, [*rooms, cap - size], opened + 1, unopened[:k] + unopened[k + 1 :])

    search(0, [], 0, caps)
    return best


def bench_quality(instances: int) -> None:
    print(f"\nGPUs used on {instances} small random instances per kind (6-12 selections)")
    print("  kind          vs FFD: fewer / equal / more    vs optimum: equal / +1 / +2 or more")
    for kind in ("one size", "mixed sizes"):
        rng = random.Random(42 if kind == "one size" else 43)
        fewer = equal = more = 0
        at_opt = plus_one = worse = 0
        done = 0
        while done < instances:
            threshold = rng.choice([0.8, 0.85, 0.9, 1.0])
            if kind == "one size":
                memory = rng.choice([16.0, 24.0, 40.0])
                gpus = [Gpu(f"n{i}", 0, memory) for i in range(12)]
            else:
                gpus = [Gpu(f"n{i}", 0, rng.choice([16.0, 24.0, 40.0, 80.0])) for i in range(12)]
            # Selections of 10% to 60% of the largest GPU's capacity, in 0.1 GiB steps:
            # several GPUs are needed and packing matters.
            largest = max(threshold * g.memory_gib for g in gpus)
            sizes = [round(rng.uniform(0.1, 0.6) * largest, 1) for _ in range(rng.randint(6, 12))]
            reference = ffd_gpus(gpus, sizes, threshold)
            if reference is None:
                continue
            demands = [Demand(f"ns/s{i:02d}", "t", "m", s) for i, s in enumerate(sizes)]
            result = plan(gpus, demands, threshold=threshold)
            assert all(p.outcome == Outcome.GPU for p in result.placements.values())
            mine = result.gpus_used
            fewer, equal, more = (
                fewer + (mine < reference),
                equal + (mine == reference),
                more + (mine > reference),
            )
            best = optimum_gpus([threshold * g.memory_gib for g in gpus], sizes)
            gap = mine - best
            at_opt, plus_one, worse = at_opt + (gap == 0), plus_one + (gap == 1), worse + (gap > 1)
            done += 1
        within_one = (at_opt + plus_one) / instances
        print(
            f"  {kind:12}  {fewer:6} / {equal:5} / {more:4}{'':15}"
            f"{at_opt:5} / {plus_one:3} / {worse:3}   within one GPU: {within_one:.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="timing runs per case")
    parser.add_argument("--instances", type=int, default=1000, help="small instances per kind")
    args = parser.parse_args()
    bench_time(args.runs)
    bench_quality(args.instances)


if __name__ == "__main__":
    main()
