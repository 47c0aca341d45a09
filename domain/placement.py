"""Placement: where the model of every selection runs, decided for all of them at once.

`plan()` is one pure function (no I/O, no clock, no randomness): GPUs and
demands in, one `Placement` per demand and the use of every GPU out. The
operator applies the plan; `/api/models/validate` reports it.

Capacity. A GPU holds models up to `threshold * memory` (the catalog's
`offload_threshold`, applied to each GPU on its own), never more. How models
share a GPU follows the cluster's sharing mode:

- `timeSliced` and `hami`: any number of models per GPU up to its capacity;
- `whole`: one model per GPU (it still has to fit below the threshold);
- `mig`: like `whole`: each MIG slice that the device plugin advertises is a
  GPU of its own (give it its slice's memory), and one model takes a slice.

Rank. A demand outranks another when its priority is higher, or the
priorities are equal and it was used more recently (`last_used`, epoch
seconds, 0 = never): the least recently used model is the one to go. A demand
only ever evicts models it outranks, so a higher-priority model is never
evicted for a lower one, and two models of equal rank never evict each other.

The steps, in this order:

1. External API options need no GPU (`external`); device policy `cpu` runs on
   the CPU; a model bigger than every GPU's capacity falls back to the CPU
   (device policy `auto` and a `cpu_memory_gib`) or is `unschedulable`.
2. Stability: a demand already running on a GPU (`current`) stays there if it
   still fits, highest rank first. What fits moves only when a model that
   outranks it needs the room.
3. The rest, highest rank first (then largest first): best fit among the GPUs
   in use (least room left), else the largest free GPU. When nothing has
   room: eviction of models it outranks, lowest priority and least recently
   used first, on the GPU where the most valuable model to go ranks lowest
   (then the fewest models, the least memory); the evicted models try again
   (another GPU with room, or the CPU).
   This step runs twice, once with best fit and once with first fit, and the
   better result wins (more placed, fewer evicted, fewer GPUs), so the plan
   never uses more GPUs than first-fit-decreasing.
4. What still has no GPU falls back to the CPU when its device policy is
   `auto` and its option has a CPU footprint; otherwise it is `evicted` (when
   it lost its GPU, now or in an earlier plan) or `unschedulable`.

Every placement carries a reason a person can read.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from fovea.domain.gpus import Gpu
from fovea.domain.resources import DEFAULT_PRIORITY, DevicePolicy, SharingMode
from fovea.domain.units import format_gb

# Slack for float sums of GiB figures (24 * 0.8 is 19.200000000000003).
EPSILON = 1e-6


class Outcome(StrEnum):
    GPU = "gpu"
    CPU = "cpu"
    EVICTED = "evicted"
    UNSCHEDULABLE = "unschedulable"
    EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a model runs: a node, and a GPU index there (None: on the node's CPU)."""

    node: str
    gpu_index: int | None = None

    def __str__(self) -> str:
        return self.node if self.gpu_index is None else f"{self.node} GPU {self.gpu_index}"


@dataclass(frozen=True, slots=True)
class Demand:
    """One selection's model, as the planner sees it."""

    key: str  # "namespace/name": unique
    task: str
    model: str
    vram_gib: float
    priority: int = DEFAULT_PRIORITY
    last_used: float = 0.0  # epoch seconds; 0 = never used
    device_policy: DevicePolicy = DevicePolicy.AUTO
    cpu_memory_gib: float | None = None  # None: the option cannot run on the CPU
    current: Slot | None = None  # where it runs now, if anywhere
    external: bool = False  # an external API: needs no GPU and no pod
    was_evicted: bool = False  # evicted by an earlier plan (keeps its outcome `evicted`)

    @property
    def rank(self) -> tuple[int, float]:
        """What eviction compares: priority, then recency of use."""
        return (self.priority, self.last_used)

    @property
    def wants_gpu(self) -> bool:
        return not self.external and self.device_policy != DevicePolicy.CPU

    @property
    def cpu_allowed(self) -> bool:
        return self.device_policy == DevicePolicy.AUTO and self.cpu_memory_gib is not None


@dataclass(frozen=True, slots=True)
class Placement:
    """The plan's decision for one demand, with its reason."""

    key: str
    outcome: Outcome
    reason: str
    node: str | None = None  # set for `gpu`
    gpu_index: int | None = None  # set for `gpu`

    @property
    def slot(self) -> Slot | None:
        return None if self.node is None else Slot(self.node, self.gpu_index)


@dataclass(frozen=True, slots=True)
class GpuUsage:
    """One GPU after the plan: its capacity below the threshold and what it holds."""

    node: str
    index: int
    memory_gib: float
    capacity_gib: float  # threshold * memory
    used_gib: float
    keys: tuple[str, ...]  # demands placed here, sorted
    product: str | None = None
    simulated: bool = False

    @property
    def free_gib(self) -> float:
        return max(0.0, self.capacity_gib - self.used_gib)


@dataclass(frozen=True)
class Plan:
    """Every demand's placement (by key) and every GPU's use (sorted by node, index)."""

    placements: Mapping[str, Placement]
    gpus: tuple[GpuUsage, ...]
    threshold: float
    sharing: SharingMode
    _by_slot: dict[tuple[str, int], GpuUsage] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self._by_slot.update(((g.node, g.index), g) for g in self.gpus)

    def usage(self, node: str, index: int | None) -> GpuUsage | None:
        """The use of one GPU, or None if the plan has no such GPU."""
        return None if index is None else self._by_slot.get((node, index))

    def spare_gib(self, node: str, index: int | None) -> float:
        """Capacity left on a GPU after the plan (0 for an unknown GPU or the CPU)."""
        usage = self.usage(node, index)
        return 0.0 if usage is None else usage.free_gib

    @property
    def gpus_used(self) -> int:
        return sum(1 for g in self.gpus if g.keys)

    def with_outcome(self, *outcomes: Outcome) -> list[Placement]:
        """The placements with one of the given outcomes, sorted by key."""
        return [p for p in self.placements.values() if p.outcome in outcomes]


def plan(
    gpus: Sequence[Gpu],
    demands: Iterable[Demand],
    *,
    threshold: float = 0.8,
    sharing: SharingMode | str = SharingMode.TIME_SLICED,
) -> Plan:
    """Decide for all demands together where each runs; see the module docstring.

    Raises ValueError for inputs that are a caller's bug: duplicate demand keys
    or GPUs, a negative VRAM figure, a threshold outside (0, 1].
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    mode = SharingMode(sharing)
    ordered = sorted(demands, key=lambda d: d.key)
    _check_unique([d.key for d in ordered], "demand key")
    _check_unique([(g.node, g.index) for g in gpus], "GPU")
    for d in ordered:
        if d.vram_gib < 0:
            raise ValueError(f"demand {d.key}: negative vram_gib {d.vram_gib}")
    bins = sorted(gpus, key=lambda g: (g.node, g.index))
    whole = mode in (SharingMode.WHOLE, SharingMode.MIG)
    best = _Run(bins, ordered, threshold, whole, first_fit=False).result()
    if not whole:
        alternative = _Run(bins, ordered, threshold, whole, first_fit=True).result()
        if alternative.score < best.score:
            best = alternative
    return best.plan(mode)


def _check_unique(items: Sequence[object], what: str) -> None:
    dupes = sorted(str(item) for item, n in Counter(items).items() if n > 1)
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(dupes)}")


# --- free-capacity strategies -------------------------------------------------
#
# Each keeps, for the GPUs (bins), what it needs to answer "which GPU takes
# `size` GiB" quickly: 10,000 demands on 1,000 GPUs are planned in well
# under a second. Positions index `_Run.bins`; `order[pos]` is the position in
# the opening order (largest capacity first, then node, index).


class _BestFit:
    """Best fit among GPUs in use; else open the largest free GPU (time-sliced)."""

    def __init__(self, cap: list[float], order: list[int]) -> None:
        self.cap, self.order = cap, order
        self.open: list[tuple[float, int, int]] = []  # (room, order, pos), in-use GPUs
        self.room_of: dict[int, tuple[float, int, int]] = {}
        self.empty = sorted((order[p], p) for p in range(len(cap)))

    def fit(self, size: float) -> int | None:
        i = bisect_left(self.open, (size - EPSILON,))
        if i < len(self.open):
            return self.open[i][2]
        if self.empty and self.cap[self.empty[0][1]] >= size - EPSILON:
            return self.empty[0][1]
        return None

    def update(self, pos: int, used: float, occupied: bool) -> None:
        old = self.room_of.pop(pos, None)
        if old is not None:
            del self.open[bisect_left(self.open, old)]
        else:
            self.empty.pop(bisect_left(self.empty, (self.order[pos], pos)))
        if occupied:
            entry = (self.cap[pos] - used, self.order[pos], pos)
            insort(self.open, entry)
            self.room_of[pos] = entry
        else:
            insort(self.empty, (self.order[pos], pos))


class _FirstFit:
    """First GPU in the opening order with room (a max segment tree over the rooms)."""

    def __init__(self, cap: list[float], order: list[int]) -> None:
        self.cap, self.order = cap, order
        self.size = 1
        while self.size < max(1, len(cap)):
            self.size *= 2
        self.tree = [-1.0] * (2 * self.size)
        self.pos_at = [0] * len(cap)
        for pos, rank in enumerate(order):
            self.pos_at[rank] = pos
            self.tree[self.size + rank] = cap[pos]
        for i in range(self.size - 1, 0, -1):
            self.tree[i] = max(self.tree[2 * i], self.tree[2 * i + 1])

    def fit(self, size: float) -> int | None:
        need = size - EPSILON
        if self.tree[1] < need:
            return None
        i = 1
        while i < self.size:
            i = 2 * i if self.tree[2 * i] >= need else 2 * i + 1
        return self.pos_at[i - self.size]

    def update(self, pos: int, used: float, occupied: bool) -> None:
        i = self.size + self.order[pos]
        self.tree[i] = self.cap[pos] - used
        i //= 2
        while i:
            self.tree[i] = max(self.tree[2 * i], self.tree[2 * i + 1])
            i //= 2


class _WholeGpu:
    """One model per GPU: the smallest free GPU that is big enough (whole, MIG)."""

    def __init__(self, cap: list[float], order: list[int]) -> None:
        self.cap, self.order = cap, order
        self.free = sorted((cap[p], order[p], p) for p in range(len(cap)))

    def fit(self, size: float) -> int | None:
        i = bisect_left(self.free, (size - EPSILON,))
        return self.free[i][2] if i < len(self.free) else None

    def update(self, pos: int, used: float, occupied: bool) -> None:
        entry = (self.cap[pos], self.order[pos], pos)
        if occupied:
            i = bisect_left(self.free, entry)
            if i < len(self.free) and self.free[i] == entry:
                del self.free[i]
        else:
            insort(self.free, entry)


_Strategy = _BestFit | _FirstFit | _WholeGpu


# --- one run of the algorithm --------------------------------------------------


@dataclass(frozen=True)
class _Result:
    score: tuple[int, int, int]  # (not on a GPU though wanted, evicted, GPUs used)
    placements: dict[str, Placement]
    usage: tuple[GpuUsage, ...]
    threshold: float

    def plan(self, mode: SharingMode) -> Plan:
        return Plan(self.placements, self.usage, self.threshold, mode)


class _Run:
    def __init__(
        self,
        bins: list[Gpu],
        demands: list[Demand],
        threshold: float,
        whole: bool,
        first_fit: bool,
    ) -> None:
        self.bins, self.demands, self.threshold, self.whole = bins, demands, threshold, whole
        self.cap = [threshold * g.memory_gib for g in bins]
        by_order = sorted(
            range(len(bins)), key=lambda p: (-self.cap[p], bins[p].node, bins[p].index)
        )
        self.order = [0] * len(bins)
        for rank, pos in enumerate(by_order):
            self.order[pos] = rank
        self.pos_of = {(g.node, g.index): p for p, g in enumerate(bins)}
        self.used = [0.0] * len(bins)
        self.members: list[list[int]] = [[] for _ in bins]
        self.where: dict[int, int] = {}  # demand -> bin position
        self.evicted_by: dict[int, int] = {}  # demand -> the demand that evicted it
        self.evicted_from: dict[int, int] = {}
        self.victims_of: dict[int, list[int]] = {}
        self.fallback: dict[int, Placement] = {}
        self.strategy: _Strategy
        if whole:
            self.strategy = _WholeGpu(self.cap, self.order)
        elif first_fit:
            self.strategy = _FirstFit(self.cap, self.order)
        else:
            self.strategy = _BestFit(self.cap, self.order)
        self.largest = max(self.cap, default=0.0)
        self.min_kept_rank: tuple[int, float] | None = None
        self.failed_size = float("inf")  # eviction failed for this size: larger ones fail too
        self._classify_and_keep()
        self._place_rest()

    # step 1 and 2
    def _classify_and_keep(self) -> None:
        self.pending: list[int] = []
        kept_candidates: list[int] = []
        for i, d in enumerate(self.demands):
            if d.external:
                self.fallback[i] = Placement(d.key, Outcome.EXTERNAL, "external API: needs no GPU")
            elif d.device_policy == DevicePolicy.CPU:
                self.fallback[i] = Placement(
                    d.key, Outcome.CPU, "device policy cpu: runs on the CPU"
                )
            elif d.vram_gib > self.largest + EPSILON:
                self.fallback[i] = self._too_big(d)
            elif d.current is not None and self._current_pos(d) is not None:
                kept_candidates.append(i)
            else:
                self.pending.append(i)
        kept_candidates.sort(key=lambda i: self._precedence(self.demands[i]))
        kept_ranks = []
        for i in kept_candidates:
            pos = self._current_pos(self.demands[i])
            assert pos is not None
            if self._fits(pos, self.demands[i].vram_gib):
                self._add(i, pos)
                kept_ranks.append(self.demands[i].rank)
            else:
                self.pending.append(i)
        self.min_kept_rank = min(kept_ranks, default=None)

    # step 3
    def _place_rest(self) -> None:
        heap = [(*self._precedence(self.demands[i]), i) for i in self.pending]
        heapq.heapify(heap)
        while heap:
            i = heapq.heappop(heap)[-1]
            d = self.demands[i]
            pos = self.strategy.fit(d.vram_gib)
            if pos is not None:
                self._add(i, pos)
                continue
            eviction = self._eviction(i)
            if eviction is None:
                self.fallback[i] = self._no_room(i)
                continue
            pos, victims = eviction
            for v in victims:
                self._remove(v)
                self.evicted_by[v] = i
                self.evicted_from[v] = pos
                self.fallback.pop(v, None)
                heapq.heappush(heap, (*self._precedence(self.demands[v]), v))
            self.victims_of[i] = victims
            self._add(i, pos)

    def _eviction(self, i: int) -> tuple[int, list[int]] | None:
        d = self.demands[i]
        if self.min_kept_rank is None or d.rank <= self.min_kept_rank:
            return None  # only models kept from before can be outranked (see _place_rest)
        if d.vram_gib >= self.failed_size:
            return None
        best: tuple[tuple[tuple[int, float], int, float, int], int, list[int]] | None = None
        for pos, members in enumerate(self.members):
            if not members or self.cap[pos] < d.vram_gib - EPSILON:
                continue
            outranked = sorted(
                (m for m in members if self.demands[m].rank < d.rank),
                key=lambda m: (*self.demands[m].rank, self.demands[m].key),
            )
            victims = self._victims(pos, d.vram_gib, outranked)
            if victims is None:
                continue
            # Evict the least valuable: the lowest, least recently used highest victim,
            # then as few models and as little memory as possible.
            score = (
                max(self.demands[v].rank for v in victims),
                len(victims),
                sum(self.demands[v].vram_gib for v in victims),
                self.order[pos],
            )
            if best is None or score < best[0]:
                best = (score, pos, victims)
        if best is None:
            self.failed_size = min(self.failed_size, d.vram_gib)
            return None
        return best[1], best[2]

    def _victims(self, pos: int, size: float, outranked: list[int]) -> list[int] | None:
        if self.whole:
            return outranked if len(outranked) == len(self.members[pos]) else None
        need = self.used[pos] + size - self.cap[pos]
        victims: list[int] = []
        for m in outranked:
            if need <= EPSILON:
                break
            victims.append(m)
            need -= self.demands[m].vram_gib
        return victims if need <= EPSILON else None

    # bookkeeping
    def _precedence(self, d: Demand) -> tuple[int, float, float, str]:
        return (-d.priority, -d.last_used, -d.vram_gib, d.key)

    def _current_pos(self, d: Demand) -> int | None:
        if d.current is None or d.current.gpu_index is None:
            return None
        return self.pos_of.get((d.current.node, d.current.gpu_index))

    def _fits(self, pos: int, size: float) -> bool:
        if self.whole:
            return not self.members[pos] and size <= self.cap[pos] + EPSILON
        return self.used[pos] + size <= self.cap[pos] + EPSILON

    def _add(self, i: int, pos: int) -> None:
        self.members[pos].append(i)
        self.used[pos] += self.demands[i].vram_gib
        self.where[i] = pos
        self.strategy.update(pos, self.used[pos], True)

    def _remove(self, i: int) -> None:
        pos = self.where.pop(i)
        self.members[pos].remove(i)
        self.used[pos] = sum(self.demands[m].vram_gib for m in self.members[pos])
        self.strategy.update(pos, self.used[pos], bool(self.members[pos]))

    # reasons
    def _pct(self) -> str:
        return f"{self.threshold:.0%}"

    def _too_big(self, d: Demand) -> Placement:
        if not self.bins:
            why = "no schedulable GPU in the cluster"
        else:
            big = max(range(len(self.bins)), key=lambda p: self.cap[p])
            why = (
                f"needs {format_gb(d.vram_gib)} GB but the largest GPU allows "
                f"{format_gb(self.cap[big])} GB ({self._pct()} of "
                f"{format_gb(self.bins[big].memory_gib)} GB)"
            )
        return self._without_gpu(d, why, evicted=False)

    def _no_room(self, i: int) -> Placement:
        d = self.demands[i]
        if i in self.evicted_by:
            by = self.demands[self.evicted_by[i]]
            why = (
                f"evicted from {self._slot(self.evicted_from[i])} to make room for {by.key} "
                f"({_outranks(by, d)}); no other GPU has room for {format_gb(d.vram_gib)} GB"
            )
            return self._without_gpu(d, why, evicted=True)
        if self.whole:
            why = (
                f"every GPU that can hold {format_gb(d.vram_gib)} GB is taken (one model per "
                "GPU) by a model of higher priority or more recent use"
            )
        else:
            why = (
                f"no GPU has {format_gb(d.vram_gib)} GB free below the {self._pct()} threshold, "
                "and no model of lower priority (or equal priority, used less recently) "
                "can be evicted to make room"
            )
        return self._without_gpu(d, why, evicted=d.was_evicted)

    def _without_gpu(self, d: Demand, why: str, *, evicted: bool) -> Placement:
        if d.cpu_allowed:
            assert d.cpu_memory_gib is not None
            return Placement(
                d.key,
                Outcome.CPU,
                f"{why}; falls back to the CPU ({format_gb(d.cpu_memory_gib)} GB)",
            )
        if d.device_policy == DevicePolicy.GPU:
            hint = "device policy gpu forbids the CPU"
        else:
            hint = "its option has no cpu_memory_gb, so it cannot run on the CPU"
        outcome = Outcome.EVICTED if evicted else Outcome.UNSCHEDULABLE
        return Placement(d.key, outcome, f"{why}; {hint}")

    def _slot(self, pos: int) -> str:
        g = self.bins[pos]
        return f"{g.node} GPU {g.index}"

    def _on_gpu(self, i: int, pos: int) -> Placement:
        d = self.demands[i]
        g = self.bins[pos]
        load = (
            f"{format_gb(self.used[pos])} of {format_gb(self.cap[pos])} GB in use "
            f"({self._pct()} of {format_gb(g.memory_gib)} GB)"
        )
        here = self._slot(pos)
        if i in self.evicted_by:
            by = self.demands[self.evicted_by[i]]
            text = (
                f"moved from {self._slot(self.evicted_from[i])} to {here} to make room for "
                f"{by.key} ({_outranks(by, d)}); {load}"
            )
        elif d.current is None:
            text = f"placed on {here}: {load}"
        elif d.current.gpu_index is None:
            text = f"placed on {here} (it ran on the CPU of {d.current.node}): {load}"
        elif self._current_pos(d) == pos:
            text = f"stays on {here}: {load}"
        elif self._current_pos(d) is None:
            text = f"moved from {d.current} (no longer a usable GPU) to {here}: {load}"
        else:
            text = f"moved from {d.current} (no longer room there) to {here}: {load}"
        victims = self.victims_of.get(i)
        if victims:
            names = ", ".join(self.demands[v].key for v in victims)
            text += f"; evicted {names}"
        return Placement(d.key, Outcome.GPU, text, g.node, g.index)

    def result(self) -> _Result:
        placements: dict[str, Placement] = {}
        for i, d in enumerate(self.demands):
            pos = self.where.get(i)
            placements[d.key] = self._on_gpu(i, pos) if pos is not None else self.fallback[i]
        usage = tuple(
            GpuUsage(
                g.node,
                g.index,
                g.memory_gib,
                self.cap[pos],
                self.used[pos],
                tuple(sorted(self.demands[m].key for m in self.members[pos])),
                g.product,
                g.simulated,
            )
            for pos, g in enumerate(self.bins)
        )
        missing = sum(1 for i, d in enumerate(self.demands) if d.wants_gpu and i not in self.where)
        evicted = sum(1 for v in self.evicted_by if v not in self.where)
        used = sum(1 for m in self.members if m)
        return _Result((missing, evicted, used), placements, usage, self.threshold)


def _outranks(by: Demand, d: Demand) -> str:
    if by.priority != d.priority:
        return f"priority {by.priority} over {d.priority}"
    return f"equal priority {by.priority}, used more recently"
