"""The operator's decision types: the world it reads in, the decisions and actions out.

`World` is everything one pass reads, as plain data; `Decisions` is what the pass
decides (per selection, per catalog, the pods to delete); `Decisions.actions()` is the
flat work list the executor (`fovea.operator.cluster`) carries out. `Resolved`,
`Problem` and `Decided` are the steps in between (`fovea.operator.reconcile`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from fovea.domain import constants as c
from fovea.domain import dra
from fovea.domain.conditions import ConditionValue, EventType, Reason
from fovea.domain.quota import Quota, Use
from fovea.domain.resources import (
    CatalogSpec,
    CatalogStatus,
    ModelOption,
    Phase,
    SelectionSpec,
    SelectionStatus,
)
from fovea.operator.claims import ClaimWrites

Key = tuple[str, str]  # (namespace, name)


Raw = Mapping[str, Any]


@dataclass(frozen=True)
class Selection:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: SelectionSpec | None  # None: the stored object does not parse
    status: Raw
    spec_error: str | None = None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Catalog:
    namespace: str
    name: str
    spec: Raw  # as stored; parsed here
    uid: str = ""
    generation: int = 0
    status: Raw = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class World:
    """Everything the operator reads, as plain data."""

    catalogs: Mapping[Key, Catalog]
    selections: Sequence[Selection]
    nodes: Sequence[Raw]
    pods: Sequence[Raw]  # model-server pods managed by fovea-models
    now: datetime = field(default_factory=lambda: datetime.fromtimestamp(0, UTC))
    quotas: Mapping[str, Quota] = field(default_factory=dict)  # namespace -> its quota
    # Pod creations the API server refused: selection -> (reason, message), from the executor.
    write_failures: Mapping[Key, tuple[str, str]] = field(default_factory=dict)
    # Pods bound to nodes in every namespace (when the operator may list them): what else
    # holds the nodes' CPU, memory, pods and GPU slots.
    node_pods: Sequence[Raw] = ()
    # "namespace/selection" of live session leases (fovea.domain.leases): not evicted for peers.
    session_leases: frozenset[str] = frozenset()
    # DRA (fovea.domain.dra): whether the cluster has the DeviceClass gpu.nvidia.com with
    # devices, the GPU devices its ResourceSlices publish, and the managed ResourceClaims.
    dra_available: bool = False
    dra_devices: Sequence[dra.Device] = ()
    claims: Sequence[Raw] = ()
    # The selections' Services (fovea.domain.endpoints) that exist.
    services: Sequence[Raw] = ()

    # Indexes built once per World (a pass at 10,000 selections looked up pods, claims and
    # devices by scanning them for each selection: quadratic).
    @cached_property
    def pods_by_key(self) -> dict[Key, Raw]:
        return {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in self.pods}

    @cached_property
    def claims_by_key(self) -> dict[Key, Raw]:
        return {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in self.claims}

    @cached_property
    def devices_by_gpu(self) -> dict[tuple[str, int], dra.Device]:
        """The device of each (node, GPU index); the first one when a slice repeats it."""
        found: dict[tuple[str, int], dra.Device] = {}
        for device in self.dra_devices:
            if device.index is not None:  # a device without an index is no planner's GPU
                found.setdefault((device.node, device.index), device)
        return found

    @cached_property
    def pods_by_gpu(self) -> dict[tuple[str | None, str | None], list[Raw]]:
        """The model pods planned on each (node, GPU index) (their annotations, as strings)."""
        found: dict[tuple[str | None, str | None], list[Raw]] = {}
        for pod in self.pods:
            notes = pod["metadata"].get("annotations") or {}
            gpu = (notes.get(c.ANNOTATION_PLANNED_NODE), notes.get(c.ANNOTATION_PLANNED_GPU))
            found.setdefault(gpu, []).append(pod)
        return found


@dataclass(frozen=True)
class Event:
    """An Event about one object; posted only once that object's status write succeeded."""

    namespace: str
    name: str
    uid: str
    type: EventType
    reason: Reason
    message: str  # at most 1 KiB
    kind: str = c.SELECTION_KIND

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class SelectionDecision:
    """What one selection should look like, and what writing it takes."""

    key: Key
    desired_pod: Raw | None  # the pod the selection should have (None: none)
    create_pod: bool  # create `desired_pod` now (False: it exists, or waits for room)
    keep: frozenset[Key]  # its pods that stay for now (the desired one included)
    status: SelectionStatus  # the operator's part of the status (runtime is the pod's)
    patch: Raw | None  # the merge patch that writes `status`; None: already current
    events: tuple[Event, ...]  # what the condition transitions tell


@dataclass(frozen=True)
class CatalogDecision:
    key: Key
    status: CatalogStatus
    patch: Raw | None  # None: already current
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Decisions:
    selections: tuple[SelectionDecision, ...]
    catalogs: tuple[CatalogDecision, ...]
    delete: tuple[Key, ...]  # managed pods no selection keeps (old models, orphans), sorted
    quota_use: Mapping[str, Use] = field(default_factory=dict)  # namespace -> use of its quota
    claims: ClaimWrites = field(default_factory=ClaimWrites)  # dra mode (fovea.operator.claims)
    services: tuple[dict[str, Any], ...] = ()  # Services to write (fovea.operator.services)

    def actions(self) -> Actions:
        """The flat work list the executor carries out."""
        out = Actions(delete=list(self.delete), quota_use=dict(self.quota_use))
        out.create_claims = list(self.claims.create)
        out.delete_claims = list(self.claims.delete)
        out.services = list(self.services)
        for d in self.selections:
            if d.desired_pod is not None:
                out.namespaces.add(d.key[0])
                if d.create_pod:
                    out.create.append(dict(d.desired_pod))
            if d.patch is not None:
                out.status[d.key] = dict(d.patch)
            out.events.extend(d.events)
        for cd in self.catalogs:
            if cd.patch is not None:
                out.catalog_status[cd.key] = dict(cd.patch)
            out.events.extend(cd.events)
        return out


@dataclass
class Actions:
    """The executor's input: an Event goes out only after its object's status write."""

    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[Key] = field(default_factory=list)
    status: dict[Key, dict[str, Any]] = field(default_factory=dict)  # ModelSelection merge patches
    catalog_status: dict[Key, dict[str, Any]] = field(default_factory=dict)  # ModelCatalog
    events: list[Event] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=set)  # where model pods need their identity
    quota_use: dict[str, Use] = field(default_factory=dict)  # for the quota metrics
    # dra mode: ResourceClaims to create (before pods) and delete (after pods).
    create_claims: list[dict[str, Any]] = field(default_factory=list)
    delete_claims: list[Key] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)  # created or patched

    def __bool__(self) -> bool:
        claims = self.create_claims or self.delete_claims
        writes = self.create or self.delete or self.status or self.catalog_status or self.services
        return bool(writes or claims)


@dataclass(frozen=True)
class Problem:
    """Why a selection cannot be planned (or needs no plan: an external API)."""

    phase: Phase
    reason: Reason
    message: str
    idle_unloaded_at: str | None = None  # status.idleUnloadedAt (keepAlive)


@dataclass(frozen=True)
class Resolved:
    sel: Selection
    option: ModelOption | None
    catalog: CatalogSpec | None
    problem: Problem | None  # None: plannable


@dataclass(frozen=True)
class Decided:
    """A selection's decision before its status is compared with what is stored."""

    status: SelectionStatus  # conditions not yet set
    scheduled: ConditionValue
    ready: ConditionValue
    desired_pod: Raw | None = None
    create_pod: bool = False
    keep: frozenset[Key] = frozenset()
    degraded: ConditionValue | None = None  # on the CPU for want of GPU memory
