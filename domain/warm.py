"""Warm switches (docs/architecture.md, "Warm switches"): pure decisions, no I/O.

A selection whose model shares its framework with other options of its task
gets a model-server pod that can serve any of them (its *warm group*): the
pod's environment lists the group, its memory request is the largest of the
group's, and a switch between members is a load into the running process
(no process start, no imports), while the model it leaves stays *parked* in
the pod's host memory for a keep-warm time, so a switch back loads nothing
from disk. Which options form a group, how much the pod may park and which
parked model goes first are decided here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from fovea.domain.resources import Framework, ModelOption, SharingMode

# The frameworks whose models load into the model server's own process (an engine
# runs its own server process: it has a sleep mode of its own, not this).
WARM_FRAMEWORKS = frozenset({Framework.PYTORCH, Framework.TRANSFORMERS, Framework.ULTRALYTICS})
# GPU limits that do not depend on the option (HAMi and MIG limits do; dra's claim carries it).
WARM_SHARING = frozenset({SharingMode.TIME_SLICED, SharingMode.WHOLE})

ENV_WARM_OPTIONS = "FOVEA_WARM_OPTIONS"  # JSON list of WarmOption: what the pod may serve
ENV_KEEP_WARM_SECONDS = "FOVEA_KEEP_WARM_SECONDS"  # how long a parked model stays
ENV_MEMORY_REQUEST_GB = "FOVEA_MEMORY_REQUEST_GB"  # the pod's memory request (GiB)
ANNOTATION_RUNTIME_HASH = "fovea.dev/runtime-hash"  # the pod spec without its model
ANNOTATION_WARM_OPTIONS = "fovea.dev/warm-options"  # the group's option names, comma-separated
WARM_LABEL_PREFIX = "warm-"  # a warm pod's fovea.dev/model label: its group, not one model
DEFAULT_KEEP_WARM_SECONDS = 600.0


@dataclass(frozen=True)
class WarmOption:
    """One option a warm pod may serve: what its process needs to load it."""

    model: str  # the catalog's option name
    model_id: str
    architecture: str | None
    allow_random_weights: bool
    declared_vram_gb: float
    memory_gb: float  # its declared host memory (cpuMemoryGb, else the default)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class WarmGroup:
    """The options one warm pod can switch between, and what the pod requests for them."""

    options: tuple[WarmOption, ...]
    memory_gb: float  # the pod's memory request: the largest member's

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.model for o in self.options)

    @property
    def label(self) -> str:
        """The pods' fovea.dev/model label (and their Service's selector) while warm."""
        digest = hashlib.sha256(json.dumps([o.to_json() for o in self.options]).encode())
        return WARM_LABEL_PREFIX + digest.hexdigest()[:10]

    def env_value(self) -> str:
        return json.dumps([o.to_json() for o in self.options], separators=(",", ":"))

    def member(self, model: str) -> WarmOption | None:
        return next((o for o in self.options if o.model == model), None)


def warm_option(name: str, option: ModelOption, default_memory_gib: float) -> WarmOption:
    return WarmOption(
        model=name,
        model_id=option.model_id,
        architecture=option.architecture,
        allow_random_weights=option.allow_random_weights,
        declared_vram_gb=option.vram_gib,
        memory_gb=option.cpu_memory_gb or default_memory_gib,
    )


def _warmable(option: ModelOption) -> bool:
    return (
        Framework(option.framework) in WARM_FRAMEWORKS
        and not option.is_external
        and option.weights is None  # a fetched entry is mounted per option (init container)
        and option.mig_profile is None
    )


def warm_group(
    options: Mapping[str, ModelOption],
    model: str,
    *,
    sharing: SharingMode | None,
    default_memory_gib: float,
    dra_time_sliced: bool = False,
) -> WarmGroup | None:
    """The warm group of `model` among its task's `options`, or None (a pod of its own).

    Members share the framework and the image, load in process, fetch no weights
    of their own and take the same GPU limits (so not under HAMi, MIG or dra, whose
    limits are per option, nor dra's MPS claims, limited to the option's memory; dra's
    time-sliced claims are not: `dra_time_sliced`); a group of one is no group.
    """
    chosen = options.get(model)
    shared = sharing in WARM_SHARING or (sharing == SharingMode.DRA and dra_time_sliced)
    if chosen is None or not _warmable(chosen) or not shared:
        return None
    members = [
        warm_option(name, option, default_memory_gib)
        for name, option in sorted(options.items())
        if _warmable(option)
        and option.framework == chosen.framework
        and (option.image or None) == (chosen.image or None)
    ]
    if len(members) < 2:
        return None
    return WarmGroup(tuple(members), max(o.memory_gb for o in members))


def parse_warm_options(raw: str) -> tuple[WarmOption, ...]:
    """The group from FOVEA_WARM_OPTIONS; ValueError naming what is wrong."""
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_WARM_OPTIONS} is not JSON: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise ValueError(f"{ENV_WARM_OPTIONS} must be a non-empty JSON list")
    out = []
    for item in items:
        try:
            out.append(
                WarmOption(
                    model=str(item["model"]),
                    model_id=str(item["model_id"]),
                    architecture=item.get("architecture") or None,
                    allow_random_weights=bool(item.get("allow_random_weights")),
                    declared_vram_gb=float(item.get("declared_vram_gb") or 0.0),
                    memory_gb=float(item["memory_gb"]),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{ENV_WARM_OPTIONS}: bad entry {item!r}: {exc}") from exc
    return tuple(out)


# --- the pod's own decisions --------------------------------------------------------------


@dataclass(frozen=True)
class Parked:
    """A model the pod keeps in host memory after switching away from it."""

    model: str
    measured_bytes: int
    parked_at: float  # the pod's monotonic clock


def park_budget_bytes(request_gb: float, resident_bytes: int, parked_bytes: int) -> int:
    """Host memory the pod may give parked models: its memory request (the group's largest,
    which the plan counts) beyond what the process holds besides them, measured (its
    resident memory less the parked models' bytes): the runtime and the serving model."""
    besides = max(0, resident_bytes - parked_bytes)
    return max(0, int(request_gb * 1024**3) - besides)


def to_evict(
    parked: Sequence[Parked], budget_bytes: int, now: float, keep_warm_seconds: float
) -> list[str]:
    """Which parked models to drop: those past their keep-warm time, then the least
    recently parked until the rest fit in `budget_bytes`."""
    drop = [p.model for p in parked if now - p.parked_at >= keep_warm_seconds]
    rest = sorted((p for p in parked if p.model not in drop), key=lambda p: p.parked_at)
    total = sum(p.measured_bytes for p in rest)
    for p in rest:
        if total <= budget_bytes:
            break
        drop.append(p.model)
        total -= p.measured_bytes
    return drop


def adoptable(
    pod_runtime_hash: str | None,
    wanted_runtime_hash: str,
    pod_vram_gib: float,
    wanted_vram_gib: float,
    terminating: bool,
) -> bool:
    """Whether a selection's existing warm pod can serve the newly selected model in place:
    the same runtime (the pod spec without its model) and a declared GPU share that
    covers the new model (the pod's annotation never understates what it holds)."""
    return (
        not terminating
        and pod_runtime_hash == wanted_runtime_hash
        and wanted_vram_gib <= pod_vram_gib + 1e-9
    )
