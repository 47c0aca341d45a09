"""Where one request for a task goes now: a pure decision over the cache's view.

`decide()` reads a snapshot's state (the task's selection, the catalog, the
endpoints of the selection's Service, which model each pod runs) and answers
one of three things, each with the words a client reads:

- `Serve`: the Ready endpoints to send it to and the model they run. The
  selected model serves as soon as one of its pods is Ready; until then, during
  a switch, the model the selection ran before keeps serving (make-before-break)
  and the answer's `X-Fovea-Model` says which one answered. Once the
  selection's status says the new model is Ready, the old one never answers
  again: the request waits the moment it takes its endpoint to be published.
- `Hold`: nothing can answer yet but something will (loading, scheduling, a
  keep-alive unload that this request wakes: `wake`).
- `Refuse`: nothing will answer without someone acting (no such task, no model
  selected, an external API, a load that failed), with its HTTP status.

The gateway (`fovea.api.gateway`) re-decides after every change the cache
sees while it holds a request, so a model that fails to load answers its
waiting requests with the failure at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fovea.api.loading import load_outcome
from fovea.api.state import ClusterState, Selection
from fovea.domain.conditions import ConditionType, Reason
from fovea.domain.endpoints import Endpoint, service_name
from fovea.domain.resources import Phase

WAKE_REASONS = frozenset({Reason.IDLE_UNLOADED.value, Reason.WAITING_FOR_DEMAND.value})
_STARTING_PHASES = frozenset(
    {Phase.PENDING, Phase.SCHEDULING, Phase.LOADING, Phase.EVICTED, Phase.READY, Phase.CPU_FALLBACK}
)


@dataclass(frozen=True)
class Backend:
    """One pod that can answer: its address and who it is."""

    url: str
    pod: str
    model: str


@dataclass(frozen=True)
class Serve:
    backends: tuple[Backend, ...]
    model: str
    selection: str
    switching: bool = False  # the previous model answers while the selected one loads


@dataclass(frozen=True)
class Hold:
    phase: str
    reason: str
    selection: str
    model: str
    wake: bool = False  # the model was unloaded for idleness or waits for demand: load it


@dataclass(frozen=True)
class Refuse:
    status: int
    message: str
    phase: str = ""
    model: str = ""
    # The refusal rests on the catalog or the selection as the cache saw them (no catalog,
    # no such task, no model selected): confirmed against the API server before it is given.
    confirm: bool = False


Decision = Serve | Hold | Refuse


def decide(
    state: ClusterState,
    task: str,
    endpoints: Mapping[str, tuple[Endpoint, ...]],
    pod_models: Mapping[str, str],
    excluded: frozenset[str] = frozenset(),
) -> Decision:
    """The decision for one request for `task` (see the module's docstring).

    `endpoints`: every Service's endpoints; `pod_models`: the model each
    model-server pod runs (its FOVEA_MODEL); `excluded`: pods that refused a
    connection for this request already (the next try goes elsewhere).
    """
    catalog = state.catalog
    if catalog is None:
        return Refuse(503, state.catalog_error or "No ModelCatalog", confirm=True)
    if task not in catalog.tasks:
        known = ", ".join(sorted(catalog.tasks))
        return Refuse(404, f"Unknown task type '{task}' (the catalog has: {known})", confirm=True)
    sel = state.selection_for(task)
    model = sel.spec.model if sel is not None else None
    if sel is None or not model:
        return Refuse(
            409,
            f"No model selected for task '{task}': select one first "
            f"(POST /api/models/select?task_type={task}&model_name=...)",
            confirm=True,
        )
    option = catalog.option(task, model)
    if option is None:
        return Refuse(
            409, f"Model '{model}' of task '{task}' is not in the catalog any more", confirm=True
        )
    if option.is_external:
        return Refuse(
            422,
            f"Model '{model}' of task '{task}' is an external API ({option.model_id}): "
            "it has no model pod to route to; call the provider directly",
            model=model,
        )
    ready = [
        ep
        for ep in endpoints.get(service_name(sel.name), ())
        if ep.ready and not ep.terminating and ep.pod not in excluded and ep.pod in pod_models
    ]
    wanted = [ep for ep in ready if pod_models[ep.pod] == model]
    if wanted:
        return Serve(_backends(wanted, pod_models), model, sel.name)
    phase = str(sel.status.phase)
    outcome = load_outcome(sel, option.model_id, sel.generation, model)
    if outcome.state == "ready":
        # The status says the selected model is Ready: its endpoint is on its way.
        return Hold(phase, "the model is Ready; its endpoint is being published", sel.name, model)
    others = [ep for ep in ready if pod_models[ep.pod] != model]
    if others:  # a switch (or a failed one): the previous model answers meanwhile
        previous = pod_models[others[0].pod]
        same = [ep for ep in others if pod_models[ep.pod] == previous]
        return Serve(_backends(same, pod_models), previous, sel.name, switching=True)
    if outcome.state == "failed":  # the pod's own report may come before the operator's
        shown_phase = phase if phase == Phase.UNSCHEDULABLE.value else Phase.FAILED.value
        # The one sentence /select?wait= answers too (fovea.domain.messages), said once.
        return Refuse(503, outcome.message, shown_phase, model)
    reason = _ready_reason(sel)
    wake = reason in WAKE_REASONS
    if not wake and sel.status.phase not in _STARTING_PHASES:
        return Refuse(503, _phase_message(sel, model), phase, model)
    return Hold(phase, sel.status.message or reason or phase, sel.name, model, wake=wake)


def _backends(endpoints: list[Endpoint], pod_models: Mapping[str, str]) -> tuple[Backend, ...]:
    return tuple(Backend(ep.url, ep.pod, pod_models[ep.pod]) for ep in endpoints)


def _ready_reason(sel: Selection) -> str:
    for cond in sel.status.conditions:
        if cond.type == ConditionType.READY.value:
            return cond.reason
    return ""


def _phase_message(sel: Selection, model: str) -> str:
    why = sel.status.message or _ready_reason(sel) or "no reason given"
    return f"Model '{model}' cannot serve: the selection is {sel.status.phase} ({why})"
