"""The operator's planner input, from the API's watch-fed view (`fovea.domain.demand`).

`/validate` and the what-if route plan with `plan_input()`: the same builder the
operator runs every pass, fed from the cache: every visible namespace's
selections and catalogs, the managed model pods and the other pods bound to
nodes, each namespace's quota (its annotations, else the operator's cluster
default, `FOVEA_OPERATOR_DEFAULT_GPU_MEMORY_QUOTA`, read by both processes), and
the live session Leases; with the operator's warm switches on
(`FOVEA_OPERATOR_WARM_SWITCHES`, read by both too), a warm pod counts at its
group's memory, as the operator counts it. What the API cannot see it does not invent: in
namespaced mode (`FOVEA_API_CLUSTER_WIDE=false`) other namespaces are absent; the
operator's model-pod image and allow-list (`FOVEA_OPERATOR_MODEL_POD_IMAGE`,
`..._ALLOWED_IMAGES`) and its sharing-mode setting are the operator's own, so the
plan takes the catalog's `sharingMode` and each option's own image.
"""

from __future__ import annotations

from typing import Any

from fovea.api.state import ClusterState, Selection
from fovea.domain import demand, leases
from fovea.domain.gpus import gpus_from_nodes
from fovea.domain.image_refs import normalize_image
from fovea.domain.resources import CatalogSpec, SharingMode


def plan_input(state: ClusterState, now: float) -> demand.PlanInput:
    """The planner's input for every selection this API sees, as the operator builds it."""
    wanted: list[demand.Wanted] = []
    used: list[CatalogSpec] = []
    for key, sel in visible_selections(state):
        catalog = state.catalogs.get((key.split("/", 1)[0], sel.spec.catalog))
        if catalog is None:
            continue  # the operator plans nothing of a missing or unparsable catalog
        used.append(catalog)
        option = catalog.option(sel.spec.task, sel.spec.model) if sel.spec.model else None
        status = stored_status(sel)
        if not demand.needs_plan(sel.spec, option, catalog.inference, status, now):
            continue
        assert option is not None
        images = frozenset({normalize_image(option.image)}) if option.image else frozenset()
        group = (
            demand.warm_group_of(catalog, sel.spec, sharing=catalog.sharing_mode)
            if state.warm_switches
            else None
        )
        wanted.append(demand.wanted(key, sel.uid, sel.spec, option, status, images, group))
    overrides = [o for cat in state.catalogs.values() for o in cat.gpu_overrides]
    return demand.build(
        wanted,
        gpus=gpus_from_nodes(list(state.nodes), overrides),
        nodes=state.nodes,
        model_pods=state.model_pods,
        other_pods=state.node_pods,
        quotas=state.quotas,
        session_leases=leases.live_selections(state.session_leases, now),
        threshold=demand.threshold_of(used),
        sharing=state.catalog.sharing_mode if state.catalog else SharingMode.TIME_SLICED,
    )


def visible_selections(state: ClusterState) -> list[tuple[str, Selection]]:
    """("namespace/name", selection) of this namespace's selections and the peers'."""
    own = [(f"{state.namespace}/{sel.name}", sel) for sel in state.selections.values()]
    return sorted([*own, *state.peers.items()], key=lambda item: item[0])


def stored_status(sel: Selection) -> dict[str, Any]:
    """The selection's status as stored (camelCase), as the operator reads it."""
    return sel.status.model_dump(by_alias=True, mode="json", exclude_none=True)
