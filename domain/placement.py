"""Placement: where the model of every selection runs, decided for all of them at once.

`plan()` is one pure function (no I/O, no clock, no randomness): GPUs, node
capacities and demands in, one `Placement` per demand, the use of every GPU
and the moves of running models out. The operator applies the plan;
`/api/models/validate` reports it.

Capacity. A GPU holds models up to `threshold * memory` (the catalog's
`offload_threshold`, applied to each GPU on its own), never more. How models
share a GPU follows the cluster's sharing mode:

- `timeSliced`, `hami` and `dra`: any number of models per GPU up to its capacity;
- `whole`: one model per GPU (it still has to fit below the threshold);
- `mig`: like `whole`: each MIG slice that the device plugin advertises is a
  GPU of its own (give it its slice's memory), and one model takes a slice.

Nodes. Given `nodes` (`fovea.domain.nodes.NodeCapacity`), a plan also fits
what the scheduler checks: every pod the plan puts on a node (GPU pods and
CPU pods alike) takes its `cpu_millis` and `memory_mib` requests, one pod,
and, on a GPU, one GPU slot (`nvidia.com/gpu`, time-slicing replicas
counted) from what the node has left; nodes whose taints model pods do not
tolerate take nothing, a demand never goes to one of its
`excluded_nodes` (where the scheduler refused its pod), and a node that
pulls no images (`NodeCapacity.images`, the `fovea.dev/preloaded-images`
taint) takes only demands whose `images` it holds. Without `nodes`,
only GPU memory counts and CPU placements name no node.

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
   outranks it needs the room, or when a model of equal or higher priority
   cannot be placed otherwise (a move, step 3).
3. The rest, all together, highest priority first, then most recently used,
   then largest: best fit among the GPUs in use (least room left), else the
   smallest free GPU that holds it (a large GPU stays free for a large
   model). When nothing has room:
   a. moves: running models of lower or equal priority leave one GPU for
      other GPUs with room, so that the demand fits there (fewest moves; at
      most `max_moves` running models move per plan; make-before-break is
      the operator's part);
   b. eviction of models it outranks, lowest priority and least recently
      used first, on the GPU where the most valuable model to go ranks
      lowest (then the fewest models, the least memory); the evicted models
      try again (another GPU with room, or the CPU).
   This step runs twice, once with best fit and once with first fit, and the
   better result wins (more placed, tier by tier from the highest priority,
   then fewer evicted, fewer GPUs, fewer moves), so the plan never uses more
   GPUs than first-fit-decreasing.
4. Exact packing of small tiers: when a demand of some priority still has no
   GPU and that priority has at most `EXACT_MAX_DEMANDS` demands wanting a
   GPU, a bounded exhaustive search looks for a packing of all of them on
   the room left by higher priorities (lower ones ignored, their models then
   stay, move or are evicted as in steps 2-3); when one exists, the plan is
   run again with it fixed. So wherever every model of the highest priority
   fits, all of them are placed, whatever order they arrived in.
5. What still has no GPU falls back to the CPU when its device policy is
   `auto` and its option has a CPU footprint (on a node with room, preferring
   nodes without GPUs, when `nodes` are given); otherwise it is `evicted`
   (when it lost its GPU, now or in an earlier plan) or `unschedulable`.

Every placement carries a reason a person can read; every running model that
the plan puts on another GPU is listed in `Plan.moves`.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fovea.domain.conditions import Outcome as Outcome  # re-exported: the vocabulary owns it
from fovea.domain.gpus import Gpu
from fovea.domain.nodes import UNLIMITED, NodeCapacity
from fovea.domain.resources import DEFAULT_PRIORITY, DevicePolicy, SharingMode
from fovea.domain.units import format_gb

# Slack for float sums of GiB figures (24 * 0.8 is 19.200000000000003).
EPSILON = 1e-6
# At most this many running models move to other GPUs in one plan.
MAX_MOVES = 10
# Step 4: tiers of at most this many demands are packed exactly, within this many steps.
EXACT_MAX_DEMANDS = 12
EXACT_STEPS = 50_000
# Step 3a looks at most at this many placed models per run (large, overfull clusters).
MOVE_WORK = 20_000
_BLOCKED = 1e18  # "used" figure that makes a GPU look full to a strategy


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
    # The pod's requests (`fovea.domain.nodes.pod_requests`), counted against nodes.
    cpu_millis: int = 0
    memory_mib: int = 0
    excluded_nodes: frozenset[str] = frozenset()  # where the scheduler refused its pod
    images: frozenset[str] = frozenset()  # what its pod runs (`normalize_image` form)

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
    node: str | None = None  # set for `gpu`; for `cpu` when the plan had node capacities
    gpu_index: int | None = None  # set for `gpu`

    @property
    def slot(self) -> Slot | None:
        return None if self.node is None else Slot(self.node, self.gpu_index)


@dataclass(frozen=True, slots=True)
class Move:
    """A running model the plan puts on another GPU (the operator posts an Event)."""

    key: str
    source: Slot
    target: Slot
    reason: str


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
    """Every demand's placement (by key), every GPU's use (sorted by node, index), the moves."""

    placements: Mapping[str, Placement]
    gpus: tuple[GpuUsage, ...]
    threshold: float
    sharing: SharingMode
    moves: tuple[Move, ...] = ()  # sorted by key
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
    nodes: Sequence[NodeCapacity] | None = None,
    max_moves: int = MAX_MOVES,
) -> Plan:
    """Decide for all demands together where each runs; see the module docstring.

    Raises ValueError for inputs that are a caller's bug: duplicate demand keys,
    GPUs or nodes, a negative VRAM figure, a threshold outside (0, 1].
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    mode = SharingMode(sharing)
    ordered = sorted(demands, key=lambda d: d.key)
    _check_unique([d.key for d in ordered], "demand key")
    _check_unique([(g.node, g.index) for g in gpus], "GPU")
    if nodes is not None:
        _check_unique([n.name for n in nodes], "node")
    for d in ordered:
        if d.vram_gib < 0:
            raise ValueError(f"demand {d.key}: negative vram_gib {d.vram_gib}")
    ctx = _Context(gpus, ordered, threshold, mode, nodes, max_moves)
    best = ctx.best_run({})
    budget = EXACT_STEPS
    for priority in sorted({d.priority for d in ordered}, reverse=True):
        if budget <= 0:
            break
        tier = [i for i in ctx.gpu_candidates if ordered[i].priority == priority]
        if not tier or all(i in best.where for i in tier) or len(tier) > EXACT_MAX_DEMANDS:
            continue
        higher = {i: pos for i, pos in best.where.items() if ordered[i].priority > priority}
        search = _Search(ctx, higher, tier, budget)
        budget -= search.steps
        if search.solution is not None:
            candidate = ctx.best_run({**higher, **search.solution})
            if candidate.score < best.score:
                best = candidate
    return best.plan(mode)


def _check_unique(items: Sequence[object], what: str) -> None:
    dupes = sorted(str(item) for item, n in Counter(items).items() if n > 1)
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(dupes)}")


# --- free-capacity strategies -------------------------------------------------
#
# Each keeps, for the GPUs (bins), what it needs to answer "which GPU takes
# `size` GiB" quickly: 10,000 demands on 1,000 GPUs are planned in well
# under a second. Positions index `_Context.bins`; `order[pos]` is the position
# in the opening order (largest capacity first, then node, index). A GPU is
# hidden from a strategy by updating it with `_BLOCKED` as its use, and shown
# again by updating it with its real use.


class _BestFit:
    """Best fit among GPUs in use; else the smallest free GPU that holds it (time-sliced)."""

    def __init__(self, cap: list[float], order: list[int]) -> None:
        self.cap, self.order = cap, order
        self.open: list[tuple[float, int, int]] = []  # (room, order, pos), in-use GPUs
        self.room_of: dict[int, tuple[float, int, int]] = {}
        self.empty = sorted((cap[p], order[p], p) for p in range(len(cap)))

    def fit(self, size: float) -> int | None:
        i = bisect_left(self.open, (size - EPSILON,))
        if i < len(self.open):
            return self.open[i][2]
        j = bisect_left(self.empty, (size - EPSILON,))
        return self.empty[j][2] if j < len(self.empty) else None

    def update(self, pos: int, used: float, occupied: bool) -> None:
        old = self.room_of.pop(pos, None)
        if old is not None:
            del self.open[bisect_left(self.open, old)]
        else:
            self.empty.pop(bisect_left(self.empty, (self.cap[pos], self.order[pos], pos)))
        if occupied:
            entry = (self.cap[pos] - used, self.order[pos], pos)
            insort(self.open, entry)
            self.room_of[pos] = entry
        else:
            insort(self.empty, (self.cap[pos], self.order[pos], pos))


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


# --- what every run shares ---------------------------------------------------------


class _Context:
    """The inputs of one `plan()` call, indexed once for all its runs."""

    def __init__(
        self,
        gpus: Sequence[Gpu],
        demands: list[Demand],
        threshold: float,
        mode: SharingMode,
        nodes: Sequence[NodeCapacity] | None,
        max_moves: int,
    ) -> None:
        self.bins = sorted(gpus, key=lambda g: (g.node, g.index))
        self.demands, self.threshold, self.max_moves = demands, threshold, max_moves
        self.whole = mode in (SharingMode.WHOLE, SharingMode.MIG)
        self.cap = [threshold * g.memory_gib for g in self.bins]
        by_order = sorted(
            range(len(self.bins)),
            key=lambda p: (-self.cap[p], self.bins[p].node, self.bins[p].index),
        )
        self.order = [0] * len(self.bins)
        for rank, pos in enumerate(by_order):
            self.order[pos] = rank
        self.pos_of = {(g.node, g.index): p for p, g in enumerate(self.bins)}
        self.node_of = [g.node for g in self.bins]
        self.gpus_on_node: dict[str, list[int]] = {}
        for p, g in enumerate(self.bins):
            self.gpus_on_node.setdefault(g.node, []).append(p)
        # Node limits: (CPU m, memory MiB, pods, GPU slots) left; None: nodes not counted.
        self.limits: dict[str, tuple[int, int, int, int]] | None = None
        self.untolerated: frozenset[str] = frozenset()
        self.preloaded: dict[str, frozenset[str]] = {}  # nodes that run only these images
        self.cpu_homes: list[str] = []  # where CPU pods may go, nodes without GPUs first
        if nodes is not None:
            usable = [n for n in nodes if n.tolerated]
            # MIG pods ask for nvidia.com/mig-<profile>, DRA pods for a ResourceClaim, not
            # nvidia.com/gpu: no slots to count.
            no_slots = mode in (SharingMode.MIG, SharingMode.DRA)
            self.limits = {
                n.name: (n.cpu_millis, n.memory_mib, n.pods, UNLIMITED if no_slots else n.gpu_slots)
                for n in usable
            }
            self.untolerated = frozenset(n.name for n in nodes if not n.tolerated)
            self.preloaded = {n.name: n.images for n in usable if n.images is not None}
            has_gpu = {n.name: n.has_gpu or n.name in self.gpus_on_node for n in usable}
            self.cpu_homes = sorted(has_gpu, key=lambda name: (has_gpu[name], name))
        self.largest = max(self.cap, default=0.0)
        self.total_cap = sum(self.cap)
        self.gpu_candidates = [
            i for i, d in enumerate(demands) if d.wants_gpu and d.vram_gib <= self.largest + EPSILON
        ]

    def current_pos(self, d: Demand) -> int | None:
        if d.current is None or d.current.gpu_index is None:
            return None
        return self.pos_of.get((d.current.node, d.current.gpu_index))

    def allowed(self, d: Demand, node: str) -> bool:
        """The node is not ruled out for this demand (taints, the scheduler's refusal, images)."""
        if node in self.untolerated or node in d.excluded_nodes:
            return False
        held = self.preloaded.get(node)
        return held is None or (bool(d.images) and d.images <= held)

    def best_run(self, pinned: Mapping[int, int]) -> _Run:
        best = _Run(self, first_fit=False, pinned=pinned)
        if not self.whole:
            alternative = _Run(self, first_fit=True, pinned=pinned)
            if alternative.score < best.score:
                best = alternative
        return best


def _need(d: Demand, on_gpu: bool) -> tuple[int, int, int, int]:
    """What a demand's pod takes from its node: CPU m, memory MiB, a pod, a GPU slot."""
    return (d.cpu_millis, d.memory_mib, 1, 1 if on_gpu else 0)


# The parts of `_need`, as a reason names them.
_NODE_RESOURCES: tuple[tuple[str, Callable[[int], str]], ...] = (
    ("CPU", lambda millis: f"{max(millis, 0) / 1000:g} CPU"),
    ("memory", lambda mib: f"{format_gb(max(mib, 0) / 1024)} GB memory"),
    ("pod slots", lambda pods: f"{max(pods, 0)} pod slots"),
    ("GPU slots", lambda slots: f"{max(slots, 0)} GPU slots"),
)


def _room(free: Sequence[int], need: tuple[int, int, int, int]) -> bool:
    return free[0] >= need[0] and free[1] >= need[1] and free[2] >= need[2] and free[3] >= need[3]


# --- one run of the algorithm --------------------------------------------------


class _Run:
    """One placement of every demand with one packing strategy; `_Context.best_run` keeps
    the better of two. Demands are indexes into `demands`, GPUs positions into `bins`.

    Read-only, from the context: `ctx`, `demands`, `bins` (GPUs sorted by node and
    index), `cap` (each GPU's usable GiB: threshold * memory), `threshold`, `whole`
    (one model per GPU: `whole` and `mig` sharing), `smallest_pod` (the least CPU and
    memory a GPU pod needs, for `full`).

    The placement so far: `used` (GiB per GPU) and `total_used`; `members` (the demands
    on each GPU); `where` (demand -> GPU); `node_free` (node -> CPU m, memory MiB, pods,
    GPU slots left; empty when nodes are not counted); `full` (nodes without room for
    even the smallest GPU pod: their GPUs are hidden from `strategy`, the packing
    (`_BestFit`, `_FirstFit` or `_WholeGpu`)); `fallback` (demand -> its placement off
    the GPUs: CPU, evicted, unschedulable, external); `cpu_node` (demand -> the node
    its CPU pod goes to).

    Why, for the reasons: `evicted_by` / `evicted_from` (demand -> who evicted it, and
    from which GPU) and `victims_of` (the reverse); `moved_by` / `moved_from` / `movers_of`
    the same for models moved to make room; `node_refused` (demands a node's CPU, memory,
    pods or slots turned away); `displaced` (ran on a GPU where they no longer fit).

    Work limits and memos: `pending` (demands still to place, in rank order);
    `moves_left` (moves allowed, from `max_moves`); `move_work` (search steps left for
    moves); `min_kept_rank` (the lowest rank among the models kept on their GPU: a
    demand of no higher rank can evict nothing); `evict_failed` / `move_failed` (sizes
    that already failed: a larger one fails too). `score` rates the result, lower is
    better: GPU-wanting demands left off per priority tier, then evictions, GPUs used
    and running models moved.
    """

    def __init__(self, ctx: _Context, first_fit: bool, pinned: Mapping[int, int]) -> None:
        self.ctx = ctx
        self.demands, self.bins, self.cap = ctx.demands, ctx.bins, ctx.cap
        self.threshold, self.whole = ctx.threshold, ctx.whole
        self.used = [0.0] * len(self.bins)
        self.total_used = 0.0
        self.members: list[list[int]] = [[] for _ in self.bins]
        self.where: dict[int, int] = {}  # demand -> bin position
        self.node_free = {k: list(v) for k, v in (ctx.limits or {}).items()}
        self.evicted_by: dict[int, int] = {}  # demand -> the demand that evicted it
        self.evicted_from: dict[int, int] = {}
        self.victims_of: dict[int, list[int]] = {}
        self.moved_by: dict[int, int] = {}  # demand -> the demand it made room for
        self.moved_from: dict[int, int] = {}
        self.movers_of: dict[int, list[int]] = {}
        self.moves_left = ctx.max_moves
        self.node_refused: set[int] = set()  # demands a node's CPU, memory or pods turned away
        self.fallback: dict[int, Placement] = {}
        self.strategy: _Strategy
        if self.whole:
            self.strategy = _WholeGpu(self.cap, ctx.order)
        elif first_fit:
            self.strategy = _FirstFit(self.cap, ctx.order)
        else:
            self.strategy = _BestFit(self.cap, ctx.order)
        for node in ctx.untolerated:
            for pos in ctx.gpus_on_node.get(node, []):
                self.strategy.update(pos, _BLOCKED, True)
        # Nodes without room for even the smallest GPU pod: their GPUs stay hidden.
        self.full: set[str] = set()
        wanting = [self.demands[i] for i in ctx.gpu_candidates]
        self.smallest_pod = (
            min((d.cpu_millis for d in wanting), default=0),
            min((d.memory_mib for d in wanting), default=0),
            1,
            1,
        )
        self.move_work = MOVE_WORK
        for node in sorted(self.node_free):
            self._check_full(node)
        self.min_kept_rank: tuple[int, float] | None = None
        self.evict_failed: list[tuple[float, int, int]] = []  # (size, CPU, memory) that failed
        self.move_failed: list[tuple[int, float, int, int]] = []  # (priority, size, CPU, memory)
        self._classify_and_keep(pinned)
        self._place_rest()
        self._place_on_cpus()
        self.score = self._score()

    # step 1 and 2
    def _classify_and_keep(self, pinned: Mapping[int, int]) -> None:
        for i, pos in sorted(pinned.items()):
            self._add(i, pos)
        self.pending: list[int] = []
        self.displaced: set[int] = set()  # ran on a GPU where it no longer fits
        kept_candidates: list[int] = []
        for i, d in enumerate(self.demands):
            if i in pinned:
                continue
            if d.external:
                self.fallback[i] = Placement(d.key, Outcome.EXTERNAL, "external API: needs no GPU")
            elif d.device_policy == DevicePolicy.CPU:
                self.fallback[i] = Placement(
                    d.key, Outcome.CPU, "device policy cpu: runs on the CPU"
                )
            elif d.vram_gib > self.ctx.largest + EPSILON:
                self.fallback[i] = self._too_big(d)
            elif self.ctx.current_pos(d) is not None:
                kept_candidates.append(i)
            else:
                self.pending.append(i)
        kept_candidates.sort(key=lambda i: self._precedence(self.demands[i]))
        kept_ranks = []
        for i in kept_candidates:
            at = self.ctx.current_pos(self.demands[i])
            assert at is not None
            if self._fits(i, at):
                self._add(i, at)
                kept_ranks.append(self.demands[i].rank)
            else:
                self.pending.append(i)
                self.displaced.add(i)
        self.min_kept_rank = min(kept_ranks, default=None)

    # step 3
    def _place_rest(self) -> None:
        heap = [(*self._precedence(self.demands[i]), i) for i in self.pending]
        heapq.heapify(heap)
        while heap:
            i = heapq.heappop(heap)[-1]
            pos = self._find(i)
            if pos is not None:
                self._add(i, pos)
                continue
            if self._move_for(i):
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
            self.move_failed.clear()  # room was freed: moves may work again
            self._add(i, pos)

    def _find(self, i: int, avoid: int | None = None) -> int | None:
        """The strategy's GPU for demand i on a node with room for its pod (not `avoid`)."""
        d = self.demands[i]
        blocked: list[int] = []
        if avoid is not None:
            self.strategy.update(avoid, _BLOCKED, True)
            blocked.append(avoid)
        try:
            while True:
                pos = self.strategy.fit(d.vram_gib)
                if pos is None:
                    return None
                node = self.ctx.node_of[pos]
                if self._node_room(i, node, on_gpu=True):
                    return pos
                if node not in d.excluded_nodes:
                    self.node_refused.add(i)
                for p in self.ctx.gpus_on_node[node]:
                    if p not in blocked:
                        self.strategy.update(p, _BLOCKED, True)
                        blocked.append(p)
        finally:
            for p in blocked:
                self._show(p)

    def _show(self, pos: int) -> None:
        """Tell the strategy a GPU's use (hidden while its node is full)."""
        if self.ctx.node_of[pos] in self.full:
            self.strategy.update(pos, _BLOCKED, True)
        else:
            self.strategy.update(pos, self.used[pos], bool(self.members[pos]))

    def _check_full(self, node: str) -> None:
        free = self.node_free.get(node)
        if free is None:
            return
        full = not _room(free, self.smallest_pod)
        if full == (node in self.full):
            return
        if full:
            self.full.add(node)
        else:
            self.full.discard(node)
        for p in self.ctx.gpus_on_node.get(node, []):
            self._show(p)

    # step 3a: moves
    def _move_for(self, i: int) -> bool:
        """Move models of lower or equal priority off one GPU so that demand i fits there."""
        d = self.demands[i]
        if self.move_work <= 0 or any(
            p >= d.priority and s <= d.vram_gib and c <= d.cpu_millis and m <= d.memory_mib
            for p, s, c, m in self.move_failed
        ):
            return False
        if self.whole or d.vram_gib <= self.ctx.total_cap - self.total_used + EPSILON:
            candidates = []
            for pos, members in enumerate(self.members):
                if not members or self.cap[pos] < d.vram_gib - EPSILON:
                    continue
                if not self.ctx.allowed(d, self.ctx.node_of[pos]):
                    continue
                self.move_work -= len(members)
                if self.move_work < 0:
                    return False  # the run's budget for looking at moves is spent
                movable = [
                    m
                    for m in members
                    if self.demands[m].priority <= d.priority and m not in self.moved_by
                ]
                if self.whole:
                    if len(movable) < len(members):
                        continue
                    need = 0.0
                else:
                    need = self.used[pos] + d.vram_gib - self.cap[pos]
                    if sum(self.demands[m].vram_gib for m in movable) < need - EPSILON:
                        continue
                candidates.append((need, len(members), self.ctx.order[pos], pos, movable))
            candidates.sort(key=lambda c: c[:4])
            for need, _, _, pos, movable in candidates[:16]:
                self.move_work -= 10 * len(movable)  # a try costs more than a look
                if self._try_moves(i, pos, need, movable):
                    return True
        if not d.excluded_nodes:
            self.move_failed.append((d.priority, d.vram_gib, d.cpu_millis, d.memory_mib))
        return False

    def _try_moves(self, i: int, pos: int, need: float, movable: list[int]) -> bool:
        # The smallest model that frees enough alone first, then the largest ones.
        alone = sorted(
            (m for m in movable if self.demands[m].vram_gib >= need - EPSILON),
            key=lambda m: (self.demands[m].vram_gib, self.demands[m].key),
        )
        rest = sorted(
            (m for m in movable if m not in alone),
            key=lambda m: (-self.demands[m].vram_gib, self.demands[m].key),
        )
        done: list[tuple[int, bool]] = []
        for m in alone + rest:
            if self._fits(i, pos):
                break
            running = self.ctx.current_pos(self.demands[m]) == pos
            if running and self.moves_left <= 0:
                continue
            self._remove(m)
            dest = self._find(m, avoid=pos)
            self._add(m, pos if dest is None else dest)
            if dest is not None:
                done.append((m, running))
                self.moves_left -= running
        if self._fits(i, pos):
            for m, _ in done:
                self.moved_by[m] = i
                self.moved_from[m] = pos
            self.movers_of[i] = [m for m, _ in done]
            self._add(i, pos)
            return True
        for m, running in reversed(done):
            self._remove(m)
            self._add(m, pos)
            self.moves_left += running
        return False

    # step 3b: eviction
    def _eviction(self, i: int) -> tuple[int, list[int]] | None:
        d = self.demands[i]
        if self.min_kept_rank is None or d.rank <= self.min_kept_rank:
            return None  # only models kept from before can be outranked (see _place_rest)
        if any(
            s <= d.vram_gib and c <= d.cpu_millis and m <= d.memory_mib
            for s, c, m in self.evict_failed
        ):
            return None
        best: tuple[tuple[tuple[int, float], int, float, int], int, list[int]] | None = None
        for pos, members in enumerate(self.members):
            if not members or self.cap[pos] < d.vram_gib - EPSILON:
                continue
            if not self.ctx.allowed(d, self.ctx.node_of[pos]):
                continue
            outranked = sorted(
                (m for m in members if self.demands[m].rank < d.rank),
                key=lambda m: (*self.demands[m].rank, self.demands[m].key),
            )
            victims = self._victims(pos, d.vram_gib, outranked)
            if victims is None or not self._node_room_after(i, pos, victims):
                continue
            # Evict the least valuable: the lowest, least recently used highest victim,
            # then as few models and as little memory as possible.
            score = (
                max(self.demands[v].rank for v in victims),
                len(victims),
                sum(self.demands[v].vram_gib for v in victims),
                self.ctx.order[pos],
            )
            if best is None or score < best[0]:
                best = (score, pos, victims)
        if best is None:
            if not d.excluded_nodes:
                self.evict_failed.append((d.vram_gib, d.cpu_millis, d.memory_mib))
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

    # step 5: CPU pods on nodes
    def _place_on_cpus(self) -> None:
        self.cpu_node: dict[int, str] = {}
        if self.ctx.limits is None:
            return
        waiting = [i for i, p in self.fallback.items() if p.outcome == Outcome.CPU]
        smallest = (
            min((self.demands[i].cpu_millis for i in waiting), default=0),
            min((self.demands[i].memory_mib for i in waiting), default=0),
            1,
            0,
        )
        # Nodes that may still take a CPU pod.
        open_homes = [n for n in self.ctx.cpu_homes if _room(self.node_free[n], smallest)]
        for i in sorted(waiting, key=lambda i: self._precedence(self.demands[i])):
            d = self.demands[i]
            homes = open_homes
            if d.current is not None and d.current.gpu_index is None:
                homes = [d.current.node, *open_homes]  # stays where it runs if there is room
            home = next((n for n in homes if self._node_room(i, n, on_gpu=False)), None)
            p = self.fallback[i]
            if home is None:
                cpu = f"{d.cpu_millis / 1000:g}"
                why = (
                    f"{p.reason}; but no node has room for its pod ({cpu} CPU, "
                    f"{format_gb(d.memory_mib / 1024)} GB memory)"
                )
                lost = i in self.evicted_by or d.was_evicted
                outcome = Outcome.EVICTED if lost else Outcome.UNSCHEDULABLE
                self.fallback[i] = Placement(d.key, outcome, why)
                continue
            self._take(d, home, _need(d, on_gpu=False), 1)
            if home in open_homes and not _room(self.node_free[home], smallest):
                open_homes.remove(home)
            self.cpu_node[i] = home
            self.fallback[i] = Placement(d.key, Outcome.CPU, f"{p.reason}, on {home}", home)

    # bookkeeping
    def _precedence(self, d: Demand) -> tuple[int, float, float, str]:
        return (-d.priority, -d.last_used, -d.vram_gib, d.key)

    def _node_room(self, i: int, node: str, *, on_gpu: bool) -> bool:
        d = self.demands[i]
        if not self.ctx.allowed(d, node):
            return False
        free = self.node_free.get(node)
        return free is None or _room(free, _need(d, on_gpu))

    def _node_room_after(self, i: int, pos: int, victims: list[int]) -> bool:
        free = self.node_free.get(self.ctx.node_of[pos])
        if free is None:
            return True
        freed = list(free)
        for v in victims:
            for k, n in enumerate(_need(self.demands[v], on_gpu=True)):
                freed[k] += n
        return _room(freed, _need(self.demands[i], on_gpu=True))

    def _fits(self, i: int, pos: int) -> bool:
        size = self.demands[i].vram_gib
        if self.whole:
            ok = not self.members[pos] and size <= self.cap[pos] + EPSILON
        else:
            ok = self.used[pos] + size <= self.cap[pos] + EPSILON
        return ok and self._node_room(i, self.ctx.node_of[pos], on_gpu=True)

    def _take(self, d: Demand, node: str, need: tuple[int, int, int, int], sign: int) -> None:
        free = self.node_free.get(node)
        if free is not None:
            for k, n in enumerate(need):
                free[k] -= sign * n

    def _add(self, i: int, pos: int) -> None:
        d = self.demands[i]
        self.members[pos].append(i)
        self.used[pos] += d.vram_gib
        self.total_used += d.vram_gib
        self.where[i] = pos
        self._take(d, self.ctx.node_of[pos], _need(d, on_gpu=True), 1)
        self._show(pos)
        self._check_full(self.ctx.node_of[pos])

    def _remove(self, i: int) -> None:
        d = self.demands[i]
        pos = self.where.pop(i)
        self.members[pos].remove(i)
        self.used[pos] = sum(self.demands[m].vram_gib for m in self.members[pos])
        self.total_used -= d.vram_gib
        self._take(d, self.ctx.node_of[pos], _need(d, on_gpu=True), -1)
        self._show(pos)
        self._check_full(self.ctx.node_of[pos])

    def _moved_running(self) -> list[int]:
        """Demands that ran on a GPU and are placed on another one."""
        out = []
        for i, pos in self.where.items():
            current = self.ctx.current_pos(self.demands[i])
            if current is not None and current != pos:
                out.append(i)
        return sorted(out)

    def _score(self) -> tuple[tuple[int, ...], int, int, int]:
        missing: dict[int, int] = {}
        for i, d in enumerate(self.demands):
            if d.wants_gpu and i not in self.where:
                missing[-d.priority] = missing.get(-d.priority, 0) + 1
        priorities = sorted({-d.priority for d in self.demands})
        by_tier = tuple(missing.get(p, 0) for p in priorities)
        evicted = sum(1 for v in self.evicted_by if v not in self.where)
        used = sum(1 for m in self.members if m)
        return (by_tier, evicted, used, len(self._moved_running()))

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
        limit = self._node_limit(d)
        if limit is not None:  # the GPU has the memory; its node lacks room for the pod
            why = (
                f"{limit}, and no model of lower priority (or equal priority, used less "
                "recently) can be evicted to make room"
            )
        elif self.whole:
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
        if limit is None and (i in self.node_refused or self._room_on_full_nodes(d)):
            why += (
                f" (GPUs with room are on nodes without room for its pod: "
                f"{d.cpu_millis / 1000:g} CPU, {format_gb(d.memory_mib / 1024)} GB memory, "
                "a pod and a GPU slot)"
            )
        if d.excluded_nodes:
            why += f" (avoiding {', '.join(sorted(d.excluded_nodes))}: the scheduler refused it)"
        return self._without_gpu(d, why, evicted=d.was_evicted)

    def _node_limit(self, d: Demand, limit: int = 64) -> str | None:
        """When a GPU has the memory but its node not the room for the pod: what is short.

        "node gpu-0's CPU is the limit: gpu-0 GPU 1 has room for its 2.0 GB below the 80%
        threshold, but gpu-0 has 0.5 CPU free and its pod needs 1 CPU" (the first such GPU).
        """
        need = _need(d, on_gpu=True)
        for pos in itertools.islice(range(len(self.bins)), limit):
            node = self.ctx.node_of[pos]
            free = self.node_free.get(node)
            if free is None or _room(free, need) or not self.ctx.allowed(d, node):
                continue
            if self.whole:
                fits = not self.members[pos] and d.vram_gib <= self.cap[pos] + EPSILON
            else:
                fits = self.used[pos] + d.vram_gib <= self.cap[pos] + EPSILON
            if not fits:
                continue
            short = [k for k in range(len(need)) if free[k] < need[k]]
            what = " and ".join(_NODE_RESOURCES[k][0] for k in short)
            lacks = "; ".join(
                f"{node} has {_NODE_RESOURCES[k][1](free[k])} free and its pod needs "
                f"{_NODE_RESOURCES[k][1](need[k])}"
                for k in short
            )
            return (
                f"node {node}'s {what} is the limit: {self._slot(pos)} has room for its "
                f"{format_gb(d.vram_gib)} GB below the {self._pct()} threshold, but {lacks}"
            )
        return None

    def _room_on_full_nodes(self, d: Demand, limit: int = 64) -> bool:
        """Whether a GPU of a node without room for any pod has the memory (for the reason)."""
        gpus = (p for node in sorted(self.full) for p in self.ctx.gpus_on_node.get(node, []))
        for p in itertools.islice(gpus, limit):
            if self.ctx.allowed(d, self.ctx.node_of[p]) and (
                self.used[p] + d.vram_gib <= self.cap[p] + EPSILON
                and not (self.whole and self.members[p])
            ):
                return True
        return False

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
        current = self.ctx.current_pos(d)
        if i in self.evicted_by:
            by = self.demands[self.evicted_by[i]]
            text = (
                f"moved from {self._slot(self.evicted_from[i])} to {here} to make room for "
                f"{by.key} ({_outranks(by, d)}); {load}"
            )
        elif i in self.moved_by and current == self.moved_from[i]:
            by = self.demands[self.moved_by[i]]
            text = (
                f"moved from {self._slot(self.moved_from[i])} to {here} to make room for "
                f"{by.key} (priority {by.priority}, which fits nowhere else); {load}"
            )
        elif d.current is None:
            text = f"placed on {here}: {load}"
        elif d.current.gpu_index is None:
            text = f"placed on {here} (it ran on the CPU of {d.current.node}): {load}"
        elif current == pos:
            text = f"stays on {here}: {load}"
        elif current is None:
            text = f"moved from {d.current} (no longer a usable GPU) to {here}: {load}"
        elif i in self.displaced:
            text = f"moved from {d.current} (no longer room there) to {here}: {load}"
        else:
            text = (
                f"moved from {d.current} to {here} so that every model of priority "
                f"{d.priority} fits: {load}"
            )
        victims = self.victims_of.get(i)
        if victims:
            names = ", ".join(self.demands[v].key for v in victims)
            text += f"; evicted {names}"
        return Placement(d.key, Outcome.GPU, text, g.node, g.index)

    def plan(self, mode: SharingMode) -> Plan:
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
        moves = []
        for i in self._moved_running():
            d, p = self.demands[i], placements[self.demands[i].key]
            assert d.current is not None and p.slot is not None
            moves.append(Move(d.key, d.current, p.slot, p.reason))
        return Plan(placements, usage, self.threshold, mode, tuple(moves))


def _outranks(by: Demand, d: Demand) -> str:
    if by.priority != d.priority:
        return f"priority {by.priority} over {d.priority}"
    return f"equal priority {by.priority}, used more recently"


# --- step 4: exact packing of a small tier ------------------------------------------


class _OutOfSteps(Exception):
    pass


class _Search:
    """Depth-first search for GPUs holding every demand of `tier` (fixed ones stay put).

    Largest first; each demand tries the GPU it runs on first (fewest moves),
    then the GPUs with the least room; GPUs in the same state on nodes in the
    same state are tried once. At most `budget` GPUs are examined.
    """

    def __init__(
        self, ctx: _Context, fixed: Mapping[int, int], tier: list[int], budget: int
    ) -> None:
        self.ctx, self.budget, self.steps = ctx, budget, 0
        self.free = list(ctx.cap)
        self.count = [0] * len(ctx.bins)
        self.node_free = {k: list(v) for k, v in (ctx.limits or {}).items()}
        for i, pos in fixed.items():
            self._take(i, pos, 1)
        demands = ctx.demands
        self.items = sorted(tier, key=lambda i: (-demands[i].vram_gib, demands[i].key))
        self.suffix = [0.0] * (len(self.items) + 1)
        for k in range(len(self.items) - 1, -1, -1):
            self.suffix[k] = self.suffix[k + 1] + demands[self.items[k]].vram_gib
        # Nodes whose name matters (excluded somewhere, where a model runs, or running only
        # the images they hold): no symmetry.
        self.named: set[str] = set(ctx.preloaded)
        for i in self.items:
            self.named.update(demands[i].excluded_nodes)
            at = ctx.current_pos(demands[i])
            if at is not None:
                self.named.add(ctx.node_of[at])
        self.assign: dict[int, int] = {}
        self.moves = 0
        self.solution: dict[int, int] | None = None
        try:
            if self._dfs(0):
                self.solution = dict(self.assign)
        except _OutOfSteps:
            pass

    def _take(self, i: int, pos: int, sign: int) -> None:
        d = self.ctx.demands[i]
        self.free[pos] -= sign * d.vram_gib
        self.count[pos] += sign
        free = self.node_free.get(self.ctx.node_of[pos])
        if free is not None:
            for k, n in enumerate(_need(d, on_gpu=True)):
                free[k] -= sign * n

    def _fits(self, i: int, pos: int) -> bool:
        d, ctx = self.ctx.demands[i], self.ctx
        if ctx.whole and self.count[pos]:
            return False
        if self.free[pos] < d.vram_gib - EPSILON or not ctx.allowed(d, ctx.node_of[pos]):
            return False
        free = self.node_free.get(ctx.node_of[pos])
        return free is None or _room(free, _need(d, on_gpu=True))

    def _signature(self, pos: int) -> tuple[object, ...]:
        node = self.ctx.node_of[pos]
        mine = (round(self.free[pos], 6), self.count[pos] if self.ctx.whole else 0)
        if node in self.named or node not in self.node_free:
            return (node, *mine)
        gpus = tuple(
            sorted((round(self.free[p], 6), self.count[p]) for p in self.ctx.gpus_on_node[node])
        )
        return (tuple(self.node_free[node]), gpus, *mine)

    def _dfs(self, k: int) -> bool:
        if k == len(self.items):
            return True
        ctx = self.ctx
        if not ctx.whole and self.suffix[k] > sum(f for f in self.free if f > 0) + EPSILON:
            return False
        i = self.items[k]
        d = ctx.demands[i]
        current = ctx.current_pos(d)
        positions = sorted(
            range(len(ctx.bins)), key=lambda p: (p != current, self.free[p], ctx.order[p])
        )
        seen: set[tuple[object, ...]] = set()
        for pos in positions:
            self.steps += 1
            if self.steps > self.budget:
                raise _OutOfSteps
            if not self._fits(i, pos):
                continue
            if pos != current:
                signature = self._signature(pos)
                if signature in seen:
                    continue
                seen.add(signature)
            moved = current is not None and pos != current
            if moved and self.moves >= ctx.max_moves:
                continue
            self._take(i, pos, 1)
            self.assign[i] = pos
            self.moves += moved
            if self._dfs(k + 1):
                return True
            self._take(i, pos, -1)
            del self.assign[i]
            self.moves -= moved
        return False
