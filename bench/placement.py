"""Benchmark of the placement planner (`fovea.domain.placement.plan`).

1. Plan time for 10,000 selections on 1,000 GPUs (target: <= 1 s), from
   scratch, re-planned with every selection already placed (the operator's
   steady state), and with whole-GPU sharing.
   Also with node capacities (125 nodes of 8 GPUs: CPU, memory, pods and GPU
   slots counted against every pod's requests; target still <= 1 s).
2. GPUs used against first-fit-decreasing (target: never more) and against
   the optimum found by exhaustive search (target: within one GPU on at
   least 95% of small random instances), for GPUs of one size and of mixed
   sizes.
3. Adversarial arrival: small random instances (1-3 nodes with CPU, memory
   and 1-3 GPUs each; lower-priority models already running; 2-6 selections
   of the highest priority) where an exhaustive search finds GPUs for every
   selection of the highest priority. They arrive one at a time, smallest
   first, each plan applied before the next arrives. Share placed (target:
   100%), and the moves of running models per placed selection (median, max).

Run: `.venv/bin/python -P bench/placement.py` (a few minutes on two cores).
Deterministic: every instance comes from a seeded generator.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from dataclasses import replace

from fovea.domain.gpus import Gpu
from fovea.domain.nodes import NodeCapacity
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
            cpu_millis=rng.choice([500, 500, 1000, 2000]),
            memory_mib=rng.choice([1024, 2048, 4096, 8192]),
        )
        for i in range(10_000)
    ]
    return gpus, demands


def large_nodes() -> list[NodeCapacity]:
    """125 GPU nodes (8 GPUs, 64 CPUs, 512 GiB, 110 pods, 8 time-slices per GPU), 25 CPU nodes."""
    gpu_nodes = [
        NodeCapacity(f"node-{n:03d}", 64_000, 512 * 1024, 110, 64, has_gpu=True) for n in range(125)
    ]
    return gpu_nodes + [NodeCapacity(f"cpu-{n:02d}", 32_000, 128 * 1024, 110) for n in range(25)]


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
    nodes = large_nodes()
    best, median, counted = timed(runs, lambda: plan(gpus, demands, nodes=nodes))
    print(f"  {'with node capacities':27}{best:6.3f} s / {median:6.3f} s   {_summary(counted)}")
    on_nodes = [
        replace(d, current=counted.placements[d.key].slot)
        if counted.placements[d.key].outcome == Outcome.GPU
        else d
        for d in demands
    ]
    best, median, _ = timed(runs, lambda: plan(gpus, on_nodes, nodes=nodes))
    print(f"  {'re-plan, node capacities':27}{best:6.3f} s / {median:6.3f} s")


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


def small_instance(rng: random.Random) -> tuple[list[Gpu], list[NodeCapacity], list[Demand]]:
    """1-3 nodes with 1-3 GPUs; lower-priority models first, then 2-6 of priority 1000."""
    gpus, nodes = [], []
    for n in range(rng.randint(1, 3)):
        name = f"gpu-{n}"
        count = rng.randint(1, 3)
        memory = rng.choice([16.0, 24.0, 40.0, 80.0])
        gpus += [Gpu(name, i, memory) for i in range(count)]
        cpu = rng.choice([2000, 4000, 8000])
        nodes.append(NodeCapacity(name, cpu, rng.choice([8192, 16384, 65536]), 110, 8 * count))
    nodes.append(NodeCapacity("cpu-0", 4000, 16384, 110))
    largest = max(0.8 * g.memory_gib for g in gpus)
    demands = []
    for i in range(rng.randint(0, 4) + rng.randint(2, 6)):
        top = rng.random() < 0.6
        demands.append(
            Demand(
                key=f"{'team-a' if top else 'team-b'}/sel-{i}",
                task=f"t{i}",
                model="m",
                vram_gib=round(rng.uniform(0.05, 0.9) * largest, 1),
                priority=1000 if top else rng.choice([50, 100]),
                cpu_memory_gib=rng.choice([None, 1.0]),
                cpu_millis=rng.choice([500, 1000]),
                memory_mib=rng.choice([1024, 2048]),
            )
        )
    return gpus, nodes, demands


def top_tier_fits(gpus: list[Gpu], nodes: list[NodeCapacity], tier: list[Demand]) -> bool:
    """Exhaustive search: do all of `tier` fit on the GPUs and their nodes at once?"""
    limits = {n.name: (n.cpu_millis, n.memory_mib, n.pods, n.gpu_slots) for n in nodes}
    for assignment in itertools.product(range(len(gpus)), repeat=len(tier)):
        memory = [0.0] * len(gpus)
        use: dict[str, list[int]] = {}
        for d, g in zip(tier, assignment, strict=True):
            memory[g] += d.vram_gib
            u = use.setdefault(gpus[g].node, [0, 0, 0, 0])
            for k, n in enumerate((d.cpu_millis, d.memory_mib, 1, 1)):
                u[k] += n
        if any(memory[g] > 0.8 * gpus[g].memory_gib + EPSILON for g in range(len(gpus))):
            continue
        if all(
            all(x <= lim for x, lim in zip(u, limits[node], strict=True)) for node, u in use.items()
        ):
            return True
    return False


def bench_arrival(instances: int) -> None:
    rng = random.Random(11)
    placed_all = done = 0
    per_placed: list[float] = []
    most_in_one_plan = 0
    while done < instances:
        gpus, nodes, demands = small_instance(rng)
        tier = [d for d in demands if d.priority == 1000]
        if not tier or len(tier) > 6 or not top_tier_fits(gpus, nodes, tier):
            continue
        # Adversarial: the others first, then the top tier smallest first.
        order = [d for d in demands if d.priority < 1000]
        order += sorted(tier, key=lambda d: (d.vram_gib, d.key))
        present: list[Demand] = []
        result = plan(gpus, [], nodes=nodes)
        moves = 0
        for d in order:
            present = [_applied(result, x) for x in present] + [d]
            result = plan(gpus, present, nodes=nodes)
            moves += len(result.moves)
            most_in_one_plan = max(most_in_one_plan, len(result.moves))
        placed = sum(1 for d in tier if result.placements[d.key].outcome == Outcome.GPU)
        placed_all += placed == len(tier)
        per_placed.append(moves / max(1, placed))
        done += 1
    print(
        f"\nAdversarial arrival on {instances} small feasible instances "
        "(others first, then the top tier smallest first; one plan per arrival)"
    )
    print(f"  top tier placed entirely: {placed_all / instances:.1%}   (target 100%)")
    print(
        f"  moves per placed selection: median {statistics.median(per_placed):.2f}, "
        f"max {max(per_placed):.2f}; most moves in one plan: {most_in_one_plan}"
    )


def _applied(result: Plan, d: Demand) -> Demand:
    p = result.placements[d.key]
    return replace(
        d,
        current=p.slot if p.outcome in (Outcome.GPU, Outcome.CPU) else None,
        was_evicted=p.outcome == Outcome.EVICTED,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="timing runs per case")
    parser.add_argument("--instances", type=int, default=1000, help="small instances per kind")
    args = parser.parse_args()
    bench_time(args.runs)
    bench_quality(args.instances)
    bench_arrival(args.instances)


if __name__ == "__main__":
    main()
