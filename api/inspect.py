"""Pure views for people and the command line: a task's whole picture, and what-if states.

No I/O: `routes_inspect` reads the cache's snapshot (and, for events and
logs, the Kubernetes API) and hands the state to these functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fovea.api.errors import CatalogUnreadable, InvalidTaskType, ModelNotFound
from fovea.api.loading import load_outcome
from fovea.api.state import ClusterState, Selection, index_by_task
from fovea.domain.resources import CatalogSpec, ModelOption, SelectionSpec, SelectionStatus
from fovea.domain.resources import selection_name as name_of_selection
from fovea.domain.units import round_gb


def option_view(option: ModelOption) -> dict[str, Any]:
    """An option in the contract's snake_case, with what a person asks of it first."""
    body = option.model_dump(mode="json", by_alias=False, exclude_none=True)
    body["declared_memory_gb"] = round_gb(option.vram_gib)
    body["cpu_fallback"] = option.cpu_memory_gb is not None
    return body


def task_view(state: ClusterState, task: str) -> dict[str, Any]:
    """One task: its options, its ModelSelection (spec and status as in the resource), its load.

    `load` judges the selected model as `/select?wait=` does: pending, ready
    or failed (with the reason); null when no model is selected. `load_policy`
    is the one in force (spec.loadPolicy, else the catalog's warmupOnStartup).
    """
    catalog = _catalog(state)
    if task not in catalog.tasks:
        raise InvalidTaskType(task)
    sel = state.selection_for(task)
    model = sel.spec.model if sel is not None and sel.spec.model else None
    option = catalog.option(task, model) if model else None
    load: dict[str, str] | None = None
    if sel is not None and option is not None:
        outcome = load_outcome(sel, option.model_id, sel.generation, model)
        load = {"state": outcome.state, "reason": outcome.reason}
        if outcome.state == "failed":
            load["message"] = outcome.message  # what /select?wait= answers, word for word
    return {
        "task_type": task,
        "selected": model,
        "selection": sel.name if sel is not None else None,
        "generation": sel.generation if sel is not None else None,
        "spec": sel.spec.model_dump(mode="json", by_alias=True) if sel is not None else None,
        # The policy in force: the selection's own, else the catalog's warmupOnStartup.
        "load_policy": (
            str(sel.spec.effective_load_policy(catalog.inference)) if sel is not None else None
        ),
        "status": (
            sel.status.model_dump(mode="json", by_alias=True, exclude_none=True)
            if sel is not None
            else None
        ),
        "load": load,
        "options": {name: option_view(opt) for name, opt in catalog.tasks[task].options.items()},
    }


def tasks_view(state: ClusterState) -> dict[str, Any]:
    """Every task of the catalog, as `task_view` describes it."""
    catalog = _catalog(state)
    return {
        "namespace": state.namespace,
        "offload_threshold": catalog.inference.offload_threshold,
        "tasks": {task: task_view(state, task) for task in catalog.tasks},
    }


def with_selections(state: ClusterState, what_if: dict[str, str]) -> ClusterState:
    """`state` as if each task selected the given model (and the operator had not decided yet).

    InvalidTaskType or ModelNotFound when a task or model is not in the catalog.
    """
    catalog = _catalog(state)
    selections = dict(state.selections)
    for task, model in what_if.items():
        if task not in catalog.tasks:
            raise InvalidTaskType(task)
        if catalog.option(task, model) is None:
            raise ModelNotFound(task, model)
        current = state.selection_for(task)
        if current is not None:
            spec = current.spec.model_copy(update={"model": model, "wanted": True})
            name, version, generation = current.name, current.resource_version, current.generation
        else:
            spec = SelectionSpec(task=task, model=model, wanted=True)
            name, version, generation = name_of_selection(task), "", 1
        selections[name] = Selection(
            name=name,
            resource_version=version,
            generation=generation + 1,
            spec=spec,
            status=SelectionStatus(),
        )
    return dataclasses.replace(
        state, selections=selections, by_task=index_by_task(selections.values())
    )


def _catalog(state: ClusterState) -> CatalogSpec:
    if state.catalog is None:
        raise CatalogUnreadable(state.catalog_error or "No ModelCatalog")
    return state.catalog
