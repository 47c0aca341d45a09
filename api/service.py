"""The service layer: what each route means, in terms of the cache and the writer.

Raises the errors of `errors.py`; knows nothing of HTTP beyond them.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fovea.api.cache import ClusterCache, Snapshot
from fovea.api.confirm import Confirmer, Fresh
from fovea.api.errors import (
    BadRequest,
    CatalogUnreadable,
    ClusterUnavailable,
    InvalidTaskType,
    ModelLoadFailed,
    ModelLoadTimeout,
    ModelNotFound,
    NoModelSelected,
)
from fovea.api.feed import ChangeFeed
from fovea.api.loading import load_outcome
from fovea.api.schemas import LoadBody, SelectBody
from fovea.api.stale_reads import readable
from fovea.api.state import ClusterState, Selection
from fovea.api.writes import SelectionWriter
from fovea.domain.resources import CatalogSpec, LoadPolicy, ModelOption, selection_name

SELECTED = "Model selection updated"
LOAD_REQUESTED = "Model load requested"
LOADED = "Model loaded"
UNLOAD_REQUESTED = "Model unload requested"
RFC3339_MICROS = "%Y-%m-%dT%H:%M:%S.%fZ"
OBSERVE_S = 2.0  # how long a write waits for the watch to bring it back
# Refusals that rest on the cache's view of the catalog: confirmed before they are given.
CACHE_REFUSALS = (CatalogUnreadable, InvalidTaskType, ModelNotFound)


class ModelService:
    """Reads answer from the cache's snapshot; writes go through the SelectionWriter."""

    def __init__(
        self,
        cache: ClusterCache,
        writer: SelectionWriter,
        feed: ChangeFeed,
        max_wait_s: float,
        confirmer: Confirmer | None = None,
        stale_read_s: float = 0.0,
    ) -> None:
        self.cache = cache
        self.writer = writer
        self.feed = feed
        self.max_wait_s = max_wait_s
        self.confirmer = confirmer  # None: the cache's refusals are given unconfirmed
        self.stale_read_s = stale_read_s  # reads from a view no longer current (stale_reads.py)

    # --- reads: precomputed bytes -------------------------------------------

    def synced_snapshot(self) -> Snapshot:
        """The current snapshot, or ClusterUnavailable while the cache is not synced (writes:
        they need the API server anyway)."""
        snap = self.cache.snapshot
        if not snap.synced:
            raise ClusterUnavailable()
        return snap

    def readable_snapshot(self) -> Snapshot:
        """The snapshot reads answer from: synced, or the last synced view for
        `stale_read_s` after it stopped being current (`stale_reads.py`); else
        ClusterUnavailable."""
        snap = self.cache.snapshot
        if not readable(snap, self.stale_read_s):
            raise ClusterUnavailable()
        return snap

    def config_json(self) -> bytes:
        """The /config body, precomputed; 500 naming the problem when the catalog is unusable."""
        return self._with_catalog().config_json

    def status_json(self) -> bytes:
        """The /status body, precomputed."""
        return self.readable_snapshot().status_json

    def validate_json(self) -> bytes:
        """The /validate body now (once per snapshot and second); 500 when the catalog is
        unusable."""
        return self._with_catalog().validate_json(time.time())

    def _with_catalog(self) -> Snapshot:
        """The readable snapshot, or CatalogUnreadable: no default values in place of a
        catalog."""
        snap = self.readable_snapshot()
        if snap.state.catalog_error is not None:
            raise CatalogUnreadable(snap.state.catalog_error)
        return snap

    # --- writes -------------------------------------------------------------

    async def select(self, task: str, model: str, wait_s: float | None) -> SelectBody:
        """Point the task's ModelSelection at `model` (a selection change is a load trigger)."""
        wait_s = self._check_wait(wait_s)
        snap = self.synced_snapshot()
        state = snap.state
        try:
            option = _option(state.catalog, state.catalog_error, task, model)
        except CACHE_REFUSALS:
            fresh = await self.fresh(None)
            if fresh is None:
                raise
            option = _option(fresh.catalog, fresh.catalog_error, task, model)
        sel = state.selection_for(task)
        fields = {"model": model, "wanted": True}
        stored = await self._write(sel, task, fields, create=True)
        assert stored is not None  # created when missing
        await self._observe(stored)
        if wait_s:
            await self._wait_loaded(_name(stored), option, model, _generation(stored), wait_s)
        return SelectBody(
            status="success",
            task_type=task,
            selected_model=model,
            model_id=option.model_id,
            message=SELECTED,
        )

    async def load(self, task: str, wait_s: float | None) -> LoadBody:
        """Mark the task's selection wanted, so an on-demand model loads."""
        wait_s = self._check_wait(wait_s)
        sel, model, option = await self._selected(task)
        # A new loadRequestedAt is activity: it reloads a model unloaded for idleness (keepAlive).
        fields = {"wanted": True, "loadRequestedAt": datetime.now(UTC).strftime(RFC3339_MICROS)}
        stored = await self._write(sel, task, fields, create=False)
        if stored is None:
            raise NoModelSelected(task)
        await self._observe(stored)
        if wait_s:
            await self._wait_loaded(_name(stored), option, model, _generation(stored), wait_s)
        message = LOADED if wait_s else LOAD_REQUESTED
        return LoadBody(
            status="success",
            task_type=task,
            model_name=model,
            model_id=option.model_id,
            message=message,
        )

    async def unload(self, task: str) -> LoadBody:
        """Free the model's memory but keep the selection (on demand, not wanted)."""
        sel, model, option = await self._selected(task)
        fields = {"wanted": False, "loadPolicy": LoadPolicy.ON_DEMAND.value}
        stored = await self._write(sel, task, fields, create=False)
        if stored is None:
            raise NoModelSelected(task)
        await self._observe(stored)
        return LoadBody(
            status="success",
            task_type=task,
            model_name=model,
            model_id=option.model_id,
            message=UNLOAD_REQUESTED,
        )

    # --- helpers ------------------------------------------------------------

    async def fresh(self, task: str | None) -> Fresh | None:
        """The catalog (and `task`'s selection) read from the API server, to confirm a
        refusal the cache's view gives (`confirm.py`); None when it cannot be read."""
        if self.confirmer is None:
            return None
        name = selection_name(task) if task is not None else None
        return await asyncio.to_thread(self.confirmer.read, name)

    async def _selected(self, task: str) -> tuple[Selection, str, ModelOption]:
        """The task's selection, its model and option; refusals confirmed first."""
        state = self.synced_snapshot().state
        try:
            return _selected_in(state.catalog, state.catalog_error, state.selection_for(task), task)
        except (*CACHE_REFUSALS, NoModelSelected):
            fresh = await self.fresh(task)
            if fresh is None:
                raise
            return _selected_in(fresh.catalog, fresh.catalog_error, fresh.selection, task)

    def _check_wait(self, wait_s: float | None) -> float | None:
        if wait_s is None or wait_s == 0:
            return None
        if wait_s < 0 or wait_s > self.max_wait_s:
            raise BadRequest(f"Invalid value for wait: at most {self.max_wait_s:g} seconds")
        return wait_s

    async def _write(
        self, sel: Selection | None, task: str, fields: dict[str, Any], create: bool
    ) -> dict[str, Any] | None:
        name = sel.name if sel is not None else selection_name(task)
        return await asyncio.to_thread(self.writer.set_spec, name, task, fields, create)

    async def _observe(self, stored: dict[str, Any]) -> None:
        """Read-your-writes: return once the cache has seen `stored` (or after a short while).

        A client that selects and then reads /config at once sees its selection.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OBSERVE_S
        name, generation = _name(stored), _generation(stored)
        while True:
            sel = self.cache.snapshot.state.selections.get(name)
            if sel is not None and sel.generation >= generation:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return  # the write succeeded; the watch is merely slow
            await self.feed.wait_change(remaining)

    async def _wait_loaded(
        self, name: str, option: ModelOption, model: str, generation: int, wait_s: float
    ) -> None:
        """Block until the model is Ready (return), Failed (500) or the time is up (503)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            state = self.cache.snapshot.state
            sel = state.selections.get(name)
            outcome = load_outcome(sel, option.model_id, generation, model)
            if outcome.state == "ready" and _pod_visible(state, sel):
                return
            if outcome.state == "failed":
                raise ModelLoadFailed(outcome.message)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ModelLoadTimeout()
            await self.feed.wait_change(remaining)


def _pod_visible(state: ClusterState, sel: Selection | None) -> bool:
    """Whether the cache has seen the model's pod too, so /status lists it after the wait.

    The pod and selection watches are separate streams; one may run ahead.
    """
    runtime = sel.status.runtime if sel is not None else None
    return runtime is None or runtime.pod is None or runtime.pod in state.live_pods


def _option(catalog: CatalogSpec | None, error: str | None, task: str, model: str) -> ModelOption:
    if catalog is None:
        raise CatalogUnreadable(error or "No ModelCatalog")
    if task not in catalog.tasks:
        raise InvalidTaskType(task)
    option = catalog.option(task, model)
    if option is None:
        raise ModelNotFound(task, model)
    return option


def _selected_in(
    catalog: CatalogSpec | None, error: str | None, sel: Selection | None, task: str
) -> tuple[Selection, str, ModelOption]:
    if catalog is None:
        raise CatalogUnreadable(error or "No ModelCatalog")
    if task not in catalog.tasks:
        raise InvalidTaskType(task)
    if sel is None or not sel.spec.model:
        raise NoModelSelected(task)
    return sel, sel.spec.model, _option(catalog, error, task, sel.spec.model)


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _generation(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("generation") or 0)
