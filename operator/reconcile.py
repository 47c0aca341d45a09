"""The operator's decision: a snapshot of the cluster in, typed decisions out.

Pure and level-based: it looks at every catalog, selection, node and model pod
at once, plans placement for all selections together (`fovea.domain.placement`),
and decides, per selection, the pod it should have, the pods to keep and the
status to write (conditions included), and the Events its condition
transitions tell; per catalog, its status. `Decisions.actions()` flattens that
into the `Actions` the executor (`fovea.operator.cluster`) carries out. The
time is an input, so tests and retries are deterministic.

This module is the pipeline; its steps live beside it: the types in
`fovea.operator.decisions`, resolution in `.resolve`, the status words in `.status`,
the Events in `.events`, make-before-break in `.handover`, raw pod reads in `.pods`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from fovea.domain import demand, dra, placement
from fovea.domain.gpus import Gpu, cpu_nodes, gpus_from_nodes
from fovea.domain.nodes import refusals
from fovea.domain.placement import Outcome
from fovea.domain.resources import (
    AllocatedDeviceStatus,
    GpuOverride,
    SharingMode,
)
from fovea.operator import warm
from fovea.operator.claims import ClaimUse, plan_claims
from fovea.operator.decisions import (
    Actions,
    Catalog,
    CatalogDecision,
    Decided,
    Decisions,
    Event,
    Key,
    Raw,
    Resolved,
    Selection,
    SelectionDecision,
    World,
)
from fovea.operator.handover import gpu_still_held
from fovea.operator.pods import gpu_of, group_by_owner, pod_key
from fovea.operator.podspec import PodSettings, pod_images
from fovea.operator.resolve import key_str, needs_compute, parse_catalogs, resolve, unload_idle
from fovea.operator.services import plan_services
from fovea.operator.status import (
    catalog_decision,
    decide,
    degraded_condition,
    finish,
    last_switch,
    pod_refused,
    quota_problem,
    scheduler_refused,
    status_patch,
)

__all__ = [  # the decision types, re-exported for the executor, the loop and the tests
    "Actions",
    "Catalog",
    "CatalogDecision",
    "Decisions",
    "Event",
    "Key",
    "Raw",
    "Selection",
    "SelectionDecision",
    "World",
    "reconcile",
    "sharing_mode",
    "status_patch",
]


def reconcile(world: World, settings: PodSettings) -> Decisions:
    """Decide everything that brings the cluster to the planned state."""
    settings = replace(settings, sharing_mode=sharing_mode(world, settings))
    catalogs, catalog_errors = parse_catalogs(world.catalogs)
    images = (*settings.allowed_images, settings.image)  # the operator's own image always runs
    resolved = [resolve(sel, catalogs, catalog_errors, images) for sel in world.selections]
    resolved = [unload_idle(r, world.now) for r in resolved]  # keepAlive: idle on-demand models go
    pods_by_owner = group_by_owner(world.pods)
    overrides = [o for cat in catalogs.values() for o in cat.gpu_overrides]
    plan_input = demand.build(
        [_wanted(r, settings) for r in resolved if needs_compute(r)],
        gpus=_gpus(world, overrides, settings),
        nodes=world.nodes,
        model_pods=world.pods,
        other_pods=world.node_pods,
        quotas=world.quotas,
        session_leases=world.session_leases,
        threshold=demand.threshold_of(r.catalog for r in resolved if r.catalog),
        sharing=sharing_mode(world, settings),
        default_memory_gib=settings.default_memory_gib,
    )
    result = plan_input.plan()
    moves = {m.key: m for m in result.moves}
    stamp = world.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    cpu_node = _cpu_node(world.nodes)
    services = plan_services(_served(resolved, settings), pods_by_owner, world.services)
    decisions = []
    uses: list[ClaimUse] = []  # dra mode: the claim of each desired GPU pod
    for r in resolved:
        refused = plan_input.refused.get(key_str(r.sel))
        if refused is not None:  # over its namespace's GPU-memory quota
            r = Resolved(r.sel, r.option, r.catalog, quota_problem(refused))
        place = result.placements.get(key_str(r.sel))
        spare = result.spare_gib(place.node, place.gpu_index) if place and place.node else 0.0
        own = pods_by_owner.get(r.sel.uid, [])
        home = place.node if place and place.outcome == Outcome.CPU and place.node else cpu_node
        claim = _claim(r, place, world, settings)
        decided = decide(r, place, spare, home, own, settings, claim.name if claim else None)
        if claim is not None and decided.desired_pod is not None:
            uses.append(ClaimUse(claim, r.sel.name, r.sel.uid))
            decided = _allocated(decided, claim, world)
        decided = scheduler_refused(r.sel, decided, refusals(own))
        decided = replace(decided, degraded=degraded_condition(r, place, result))
        near = _near(world, decided.desired_pod, own)
        if decided.create_pod and gpu_still_held(decided.desired_pod, result, near, r.sel):
            decided = replace(decided, create_pod=False)  # make-before-break: others leave first
        refusal = world.write_failures.get(r.sel.key)
        if refusal is not None and decided.create_pod:
            decided = pod_refused(decided, *refusal)
        endpoint = services.endpoints.get(r.sel.key)
        if endpoint is not None:
            runtime = r.sel.status.get("runtime") or {}
            serving = warm.serving_model(endpoint.serving_model, runtime, decided.status.pod)
            endpoint = endpoint.model_copy(update={"serving_model": serving})
            decided = replace(
                decided, status=decided.status.model_copy(update={"endpoint": endpoint})
            )
        decided = last_switch(r.sel, decided, own, world.now)
        decisions.append(finish(r.sel, decided, moves.get(key_str(r.sel)), stamp))

    keep = {k for d in decisions for k in d.keep}
    delete = sorted(
        key
        for pod in world.pods
        if (key := pod_key(pod)) not in keep and not pod["metadata"].get("deletionTimestamp")
    )
    catalog_decisions = tuple(
        catalog_decision(cat, catalogs.get(key), catalog_errors.get(key), stamp)
        for key, cat in sorted(world.catalogs.items())
    )
    claims = plan_claims(uses, world.pods, world.claims)
    return Decisions(
        tuple(decisions), catalog_decisions, tuple(delete), plan_input.use, claims, services.writes
    )


def _served(
    resolved: Sequence[Resolved], settings: PodSettings
) -> Iterator[tuple[Key, str, str, str]]:
    """(key, uid, task, model label) of each selection whose requests a model pod answers
    (a warm pod's label names its group: the Service stays on it through its switches)."""
    for r in resolved:
        spec = r.sel.spec
        if spec is not None and spec.model and r.option is not None and not r.option.is_external:
            label = warm.served_label(r, settings) or spec.model
            yield r.sel.key, r.sel.uid, spec.task, label


def sharing_mode(world: World, settings: PodSettings) -> SharingMode:
    """The pass's sharing mode: the setting, else (auto) `dra` when the cluster speaks DRA."""
    if settings.sharing_mode is not None:
        return settings.sharing_mode
    return SharingMode.DRA if world.dra_available else SharingMode.TIME_SLICED


def _gpus(world: World, overrides: Sequence[GpuOverride], settings: PodSettings) -> list[Gpu]:
    """The GPUs to plan on; in dra mode only those a ResourceSlice publishes (a claim can pin)."""
    gpus = gpus_from_nodes(list(world.nodes), overrides)
    if settings.sharing_mode != SharingMode.DRA:
        return gpus
    return [g for g in gpus if (g.node, g.index) in world.devices_by_gpu]


def _claim(
    r: Resolved, place: placement.Placement | None, world: World, settings: PodSettings
) -> dra.Claim | None:
    """dra mode: the claim the selection's pod on its planned GPU references."""
    if settings.sharing_mode != SharingMode.DRA or r.option is None or place is None:
        return None
    if place.outcome != Outcome.GPU or place.node is None or place.gpu_index is None:
        return None
    device = world.devices_by_gpu.get((place.node, place.gpu_index))
    if device is None:
        return None
    sharing, vram = settings.dra_sharing, r.option.vram_gib
    return dra.claim_for(r.sel.namespace, r.sel.name, device, sharing, vram)


def _allocated(d: Decided, claim: dra.Claim, world: World) -> Decided:
    """The device the scheduler allocated to the pod's claim, once the pod is bound to a node.

    The claim is the observer: `status.allocatedDevice` and `gpuIndex` come from its
    `status.allocation` (and the device's ResourceSlice), not from the plan. A claim being
    deleted cannot be used again: the pod waits until it is gone and made anew.
    """
    obj = world.claims_by_key.get(claim.key)
    if obj is not None and obj["metadata"].get("deletionTimestamp"):
        return replace(d, create_pod=False)
    pod = world.pods_by_key.get((claim.namespace, d.status.pod or ""))
    if obj is None or pod is None or not (pod.get("spec") or {}).get("nodeName"):
        return d
    found = dra.allocated(obj, world.dra_devices)
    if found is None:
        return d
    device = AllocatedDeviceStatus(
        uuid=found.uuid,
        index=found.index,
        driver=found.driver,
        pool=found.pool,
        device=found.device,
        claim=found.claim,
    )
    update = {"allocated_device": device, "gpu_index": found.index}
    return replace(d, status=d.status.model_copy(update=update))


def _near(world: World, pod: Raw | None, own: Sequence[Raw]) -> list[Raw]:
    """The pods make-before-break looks at for `pod`: those on its GPU, and the selection's own."""
    if pod is None:
        return list(own)
    return [*world.pods_by_gpu.get(gpu_of(pod), []), *own]


def _wanted(r: Resolved, settings: PodSettings) -> demand.Wanted:
    """A resolved selection, as the demand builder takes it (`fovea.domain.demand`)."""
    assert r.option is not None and r.sel.spec is not None
    option = r.option
    return demand.wanted(
        key_str(r.sel),
        r.sel.uid,
        r.sel.spec,
        option,
        r.sel.status,
        pod_images(option, settings),
        warm.group_of(r, settings, settings.sharing_mode),
    )


def _cpu_node(nodes: Sequence[Raw]) -> str | None:
    """Where CPU pods go: the first node without GPUs, else anywhere the scheduler likes."""
    plain = [n.name for n in cpu_nodes(nodes) if not n.has_gpu]
    return plain[0] if plain else None
