"""GPU-memory quotas per namespace: which demands the planner may place at all.

A namespace's quota is one number, the GPU memory (GiB) its selections may
hold together, plus an optional priority ceiling. The platform team sets them
as annotations on the Namespace (`fovea.dev/gpu-memory-quota: 40Gi`,
`fovea.dev/max-priority: 100`); a namespace without the annotation gets the
operator's cluster default (none: unlimited). Tenants usually may not edit
their own Namespace object, so only the platform team can raise a quota.

A refused demand is `Unschedulable` with reason `QuotaExceeded`
(`fovea.domain.conditions`). `admit()` is pure: per namespace, demands that
want a GPU are admitted by rank (priority, then the ones already running on
a GPU, then the most recently used, then the key) while their declared
memory fits below the quota; one that does not fit is refused, and a smaller one of lower rank may
still be admitted after it. Demands that need no GPU (device policy `cpu`,
external APIs) never count. Priorities above the ceiling are clamped to it:
a tenant cannot outrank another by writing a bigger number. Namespaces
without a quota, and every other namespace, are untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fovea.domain import constants as c
from fovea.domain.placement import EPSILON, Demand
from fovea.domain.units import GIB, format_gb, parse_quantity, parse_size


@dataclass(frozen=True, slots=True)
class Quota:
    """One namespace's limits; None means no limit."""

    gpu_memory_gib: float | None = None
    max_priority: int | None = None
    problem: str | None = None  # an annotation that did not parse (the default applies)

    @property
    def limited(self) -> bool:
        return self.gpu_memory_gib is not None or self.max_priority is not None


UNLIMITED = Quota()


@dataclass(frozen=True, slots=True)
class Use:
    """What a namespace's admitted demands hold against its quota."""

    quota: Quota
    used_gib: float = 0.0
    refused: int = 0  # demands refused for the quota


@dataclass(frozen=True)
class Admission:
    admitted: list[Demand]  # priorities clamped to the namespace's ceiling
    refused: dict[str, str]  # demand key -> message naming the quota and the use
    use: dict[str, Use]  # namespace -> use, for every namespace with a quota


def parse_gib(value: str) -> float:
    """A GPU-memory figure: a bare number is GiB ("40"), else a size as printed ("40GB",
    "40 GiB": `fovea.domain.units.parse_size`) or a quantity ("40Gi", "40960Mi")."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            number = parse_size(text) / GIB
        except ValueError:
            number = float(parse_quantity(text)) / GIB
    if not number >= 0 or number == float("inf"):  # also refuses NaN
        raise ValueError(f"not a GPU-memory figure: {value!r}")
    return number


def default_quota(gpu_memory: str, max_priority: int | None) -> Quota:
    """The cluster default quota from its two settings (ValueError when the figure does not
    parse): the operator admits with it, the API predicts with it."""
    return Quota(parse_gib(gpu_memory) if gpu_memory else None, max_priority)


def quota_from_annotations(annotations: Mapping[str, str] | None, default: Quota) -> Quota:
    """A namespace's quota: its annotations, else the cluster default, field by field."""
    ann = annotations or {}
    gib, ceiling, problems = default.gpu_memory_gib, default.max_priority, []
    raw_gib = ann.get(c.ANNOTATION_GPU_MEMORY_QUOTA)
    if raw_gib is not None:
        try:
            gib = parse_gib(raw_gib)
        except ValueError:
            problems.append(f"{c.ANNOTATION_GPU_MEMORY_QUOTA}={raw_gib!r} is not a GiB figure")
    raw_ceiling = ann.get(c.ANNOTATION_MAX_PRIORITY)
    if raw_ceiling is not None:
        try:
            ceiling = int(raw_ceiling.strip())
        except ValueError:
            problems.append(f"{c.ANNOTATION_MAX_PRIORITY}={raw_ceiling!r} is not an integer")
    return Quota(gib, ceiling, "; ".join(problems) or None)


def namespace_of(key: str) -> str:
    """The namespace of a demand key ("namespace/name")."""
    return key.split("/", 1)[0]


def admit(demands: Iterable[Demand], quotas: Mapping[str, Quota]) -> Admission:
    """Admit each namespace's demands within its quota; see the module docstring."""
    admitted: list[Demand] = []
    refused: dict[str, str] = {}
    by_namespace: dict[str, list[Demand]] = {}
    for demand in demands:
        quota = quotas.get(namespace_of(demand.key), UNLIMITED)
        if quota.max_priority is not None and demand.priority > quota.max_priority:
            demand = dataclasses.replace(demand, priority=quota.max_priority)
        by_namespace.setdefault(namespace_of(demand.key), []).append(demand)
    use: dict[str, Use] = {}
    for ns, group in sorted(by_namespace.items()):
        quota = quotas.get(ns, UNLIMITED)
        limit = quota.gpu_memory_gib
        used, count = 0.0, 0
        for demand in sorted(group, key=_admission_order):
            if not demand.wants_gpu:
                admitted.append(demand)
                continue
            if limit is None or used + demand.vram_gib <= limit + EPSILON:
                used += demand.vram_gib
                admitted.append(demand)
                continue
            count += 1
            refused[demand.key] = (
                f"Namespace '{ns}' has a GPU-memory quota of {format_gb(limit)} GB "
                f"and {format_gb(used)} GB of it is held by selections of higher or equal "
                f"rank: {demand.model} needs {format_gb(demand.vram_gib)} GB"
            )
        if quota.limited:
            use[ns] = Use(quota, used, count)
    for ns, quota in quotas.items():
        if quota.limited and ns not in use:
            use[ns] = Use(quota)
    return Admission(admitted, refused, use)


def _admission_order(d: Demand) -> tuple[int, int, float, str]:
    running = d.current is not None and d.current.gpu_index is not None
    return (-d.priority, 0 if running else 1, -d.last_used, d.key)
