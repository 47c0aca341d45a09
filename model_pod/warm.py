"""A warm pod's switches: load the next model into the running process, park the one left.

The pod's environment lists its warm group (`fovea.domain.warm`): the options of
its task it may serve. The process follows its ModelSelection's `spec.model`
(a watch, `follow_selection`); when it names another member, `WarmRuntime`
loads it beside the serving model, which keeps answering until the new one is
loaded, warm and measured; then the two swap under the predict lock (no
request sees half a switch) and the model left is parked: kept in host memory
(moved off the GPU), measured, for the keep-warm time. A switch back to a
parked model loads nothing from disk (`loadSource: parked`, `diskLoads`
unchanged). A load that fails leaves the serving model serving and reports the
failure for the model that was asked for. Parked models are dropped when their
keep-warm time ends, or, least recently parked first, when they would not fit
in what the pod's memory request leaves beside the serving model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fovea.domain import constants as c
from fovea.domain.conditions import RuntimeState, SwitchPhase
from fovea.domain.resources import ParkedModel, PhaseStamp, RuntimeReport
from fovea.domain.switch import stamp
from fovea.domain.warm import Parked, WarmOption, park_budget_bytes, to_evict
from fovea.model_pod import measure
from fovea.model_pod.adapters import adapter_for
from fovea.model_pod.adapters.base import Adapter, LoadedModel
from fovea.model_pod.failures import failure_of
from fovea.model_pod.identity import Identity

log = logging.getLogger("fovea.model_pod.warm")

SOURCE_DISK = "disk"
SOURCE_PARKED = "parked"
WATCH_SECONDS = 60  # one watch request's length; it is renewed at once


@dataclass
class _Held:
    """A loaded model of this process: serving, or parked."""

    identity: Identity
    adapter: Adapter
    loaded: LoadedModel
    report: RuntimeReport  # its last Ready report
    measured_bytes: int = 0
    parked_at: float = 0.0  # monotonic
    parked_wall: datetime | None = None


def _to_host(adapter: Adapter) -> None:
    """Move a parked model's weights off the GPU (on the CPU they already are in host memory)."""
    module = adapter.module
    if module is None:
        return
    import torch

    module.to("cpu")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _to_device(adapter: Adapter, device: str) -> None:
    module = adapter.module
    if module is not None and device != "cpu":
        module.to(device)


def _module_bytes(adapter: Adapter) -> int:
    module = adapter.module
    if module is None:
        return 0
    params, buffers = measure.module_bytes(module)
    return params + buffers


class WarmRuntime:
    """The switches of one warm pod (see the module docstring). `service` is its ModelService."""

    def __init__(
        self,
        service: Any,
        options: tuple[WarmOption, ...],
        request_gb: float,
        keep_warm_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.service = service
        self.options = {o.model: o for o in options}
        self.request_gb = request_gb
        self.keep_warm_seconds = keep_warm_seconds
        self.clock = clock
        self.parked: dict[str, _Held] = {}
        self.disk_loads = 0
        self.load_source: str | None = None
        self._wanted: str | None = None
        self._changed = threading.Condition()
        self._switching = threading.Lock()  # one switch at a time

    # --- what the report adds ------------------------------------------------------------

    def fields(self) -> dict[str, Any]:
        """The warm fields of every report: who serves, parked models, the runtime's share."""
        service = self.service
        serving = service.identity.model if service.ready else None
        parked = [self._parked_report(h) for h in self.parked.values()]
        models = sum(h.measured_bytes for h in self.parked.values())
        if service.ready and service.adapter is not None and service.identity.device == "cpu":
            models += _module_bytes(service.adapter)
        overhead = max(0, measure.rss_bytes() - models)
        return {
            "serving_model": serving,
            "load_source": self.load_source,
            "disk_loads": self.disk_loads,
            "parked": parked,
            "runtime_overhead_gb": measure.gib(overhead),
        }

    def _parked_report(self, held: _Held) -> ParkedModel:
        since = held.parked_wall or datetime.now(UTC)
        until = since + timedelta(seconds=self.keep_warm_seconds)
        return ParkedModel(
            model=held.identity.model or "",
            model_id=held.identity.spec.model_id,
            measured_memory_gb=measure.gib(held.measured_bytes),
            parked_at=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            keep_warm_until=until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    # --- the first load and the switches -------------------------------------------------

    def first_load(self) -> None:
        """The pod's first model, loaded the ordinary way (`ModelService.load`), from disk."""
        with self._switching:
            self.disk_loads += 1  # counted as it starts: its reports say where it comes from
            self.load_source = SOURCE_DISK
            self.service.load()
        self._take_wanted()

    def want(self, model: str | None) -> None:
        """The selection names `model` now: switch to it (in the switching thread)."""
        if model is None or model not in self.options:
            return  # not one of ours: the operator gives the selection another pod
        with self._changed:
            self._wanted = model
            self._changed.notify_all()

    def run(self, stop: threading.Event) -> None:
        """The switching thread: switch to each model wanted, the latest first."""
        while not stop.is_set():
            with self._changed:
                self._changed.wait_for(lambda: self._wanted is not None or stop.is_set(), 1.0)
            self._take_wanted()

    def _take_wanted(self) -> None:
        with self._changed:
            model, self._wanted = self._wanted, None
        if model is not None:
            with self._switching:
                self.switch(model)

    def switch(self, model: str) -> None:
        """Serve `model`: from the parked ones, else loaded from disk; never raise."""
        service = self.service
        option = self.options.get(model)
        if option is None:
            return
        if service.ready and service.identity.model == model:
            service.republish()  # e.g. back from a failed switch: say the serving one is it
            return
        if not service.ready and service.adapter is not None and service.identity.model == model:
            return  # its own first load is still under way (or failed: the reason stands)
        identity = self._identity(option)
        held = self.parked.pop(model, None)
        log.info("switching to %s (%s)", model, "parked" if held else "from disk")
        serving_source = self.load_source
        self.load_source = SOURCE_DISK if held is None else SOURCE_PARKED
        if held is None:
            self.disk_loads += 1  # counted as it starts, like the first
        # This switch's steps on the pod's clock (status.runtime.phases): the runtime was
        # ready the moment it saw the switch; no process start, no imports.
        phases = [_mark(SwitchPhase.RUNTIME_READY)]
        self._publish(self._report(identity, RuntimeState.LOADING, phases))
        try:
            if held is not None:
                started = time.perf_counter()
                _to_device(held.adapter, identity.device)
                seconds = time.perf_counter() - started
                phases.append(_mark(SwitchPhase.LOADED))  # warmed when it first served
                ready = held.report.model_copy(
                    update={"load_time_seconds": round(seconds, 3), "phases": phases}
                )
            else:
                held, ready = self._load(identity, phases)
        except Exception as exc:  # the serving model stays; the failure is reported
            kind, reason = failure_of(exc, "load")
            log.error("switch to %s failed (%s): %s", model, kind, reason)
            self._publish(
                self._report(identity, RuntimeState.FAILED, phases).model_copy(
                    update={"failure": kind, "reason": reason}
                )
            )
            self.load_source = serving_source  # the serving model's, again
            return
        left = self._swap(held)
        if left is not None:
            self._park(left)
        self._publish(ready)

    def _identity(self, option: WarmOption) -> Identity:
        base: Identity = self.service.identity
        spec = replace(
            base.spec,
            model_id=option.model_id,
            architecture=option.architecture,
            allow_random_weights=option.allow_random_weights,
            declared_vram_gb=option.declared_vram_gb,
        )
        return replace(base, spec=spec, model=option.model)

    def _load(self, identity: Identity, phases: list[PhaseStamp]) -> tuple[_Held, RuntimeReport]:
        adapter = adapter_for(identity.framework, identity.spec)
        try:
            base = measure.baseline(identity.device)
            started = time.perf_counter()
            loaded = adapter.load(identity.device)
            load_seconds = time.perf_counter() - started
            phases.append(_mark(SwitchPhase.LOADED))
            warm_started = time.perf_counter()
            adapter.warmup(identity.spec.batch_size)
            warm_seconds = time.perf_counter() - warm_started
            phases.append(_mark(SwitchPhase.WARMED))
            reading = measure.module_reading(identity.device, adapter.module, base)
        except Exception:
            adapter.close()
            raise
        report = self._report(identity, RuntimeState.READY, phases).model_copy(
            update={
                "reason": f"{loaded.source}; memory measured as {reading.method}",
                "random_weights": loaded.random_weights,
                "measured_memory_gb": measure.gib(reading.measured_bytes),
                "memory_breakdown": {**reading.breakdown, "warmupSeconds": round(warm_seconds, 3)},
                "load_time_seconds": round(load_seconds, 3),
            }
        )
        return _Held(identity, adapter, loaded, report), report

    def _swap(self, held: _Held) -> _Held | None:
        """Make `held` the serving model at once (under the predict lock); return the one left."""
        service = self.service
        with service.predict_lock:
            left = None
            if service.ready and service.adapter is not None and service.loaded is not None:
                left = _Held(service.identity, service.adapter, service.loaded, service.report)
            elif service.adapter is not None:
                service.close()  # a failed first model: nothing to park
            service.identity = held.identity
            service.adapter = held.adapter
            service.loaded = held.loaded
            service.state = RuntimeState.READY
            service.reason = held.report.reason
        return left

    def _park(self, held: _Held) -> None:
        try:
            _to_host(held.adapter)
        except Exception:  # a model that cannot be parked is dropped, not kept half-moved
            log.exception("parking %s failed: dropped", held.identity.model)
            held.adapter.close()
            return
        held.measured_bytes = _module_bytes(held.adapter)
        held.parked_at = self.clock()
        held.parked_wall = datetime.now(UTC)
        self.parked[held.identity.model or ""] = held
        self.evict()

    def evict(self) -> bool:
        """Drop parked models past their keep-warm time or beyond the budget; whether any went."""
        parked = [Parked(m, h.measured_bytes, h.parked_at) for m, h in self.parked.items()]
        total = sum(p.measured_bytes for p in parked)
        budget = park_budget_bytes(self.request_gb, measure.rss_bytes(), total)
        drop = to_evict(parked, budget, self.clock(), self.keep_warm_seconds)
        for model in drop:
            gone = self.parked.pop(model)
            log.info("dropping parked model %s (%d bytes)", model, gone.measured_bytes)
            gone.adapter.close()
        return bool(drop)

    def expire(self) -> None:
        """Called each second: drop what is due and say so."""
        if not self.parked or not self._switching.acquire(blocking=False):
            return
        try:
            if self.evict():
                self.service.republish()
        finally:
            self._switching.release()

    # --- reports -------------------------------------------------------------------------

    def _report(
        self, identity: Identity, state: RuntimeState, phases: list[PhaseStamp] | None = None
    ) -> RuntimeReport:
        return RuntimeReport(
            phases=list(phases or []),
            state=state,
            pod=identity.pod_name,
            model=identity.model,
            model_id=identity.spec.model_id,
            device=identity.device,
            simulated_gpu=identity.simulated_gpu,
        )

    def _publish(self, report: RuntimeReport) -> None:
        self.service.publish_warm(report)


def _mark(phase: SwitchPhase) -> PhaseStamp:
    return PhaseStamp(name=phase, at=stamp(datetime.now(UTC)))


# --- following the selection -------------------------------------------------------------


def follow_selection(
    api_client: Any,
    namespace: str,
    name: str,
    on_model: Callable[[str | None], None],
    stop: threading.Event,
) -> None:
    """Watch one ModelSelection and call `on_model` with its spec.model at each change of its
    spec (its generation): the pod's own status reports change the object too, and must not
    start the same switch again (a failed one would be retried for ever)."""
    from kubernetes import client, watch

    api = client.CustomObjectsApi(api_client)
    selector = f"metadata.name={name}"
    version: str | None = None
    seen: int | None = None  # the generation last followed

    def changed(obj: dict[str, Any]) -> None:
        nonlocal seen
        generation = int(obj.get("metadata", {}).get("generation") or 0)
        if generation != seen:
            seen = generation
            on_model((obj.get("spec") or {}).get("model"))

    while not stop.is_set():
        try:
            if version is None:
                listed: Any = api.list_namespaced_custom_object(
                    c.GROUP, c.VERSION, namespace, c.SELECTION_PLURAL, field_selector=selector
                )
                version = listed["metadata"]["resourceVersion"]
                for item in listed.get("items", []):
                    changed(item)
            stream = watch.Watch().stream(
                api.list_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                namespace,
                c.SELECTION_PLURAL,
                field_selector=selector,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
            )
            for event in stream:
                obj: dict[str, Any] = event["object"]
                if event["type"] == "ERROR":
                    version = None  # expired: list again
                    break
                version = obj["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    changed(obj)
                if stop.is_set():
                    return
        except Exception as exc:  # the API server restarts, the watch expires: start over
            log.warning("watching selection %s/%s: %s", namespace, name, exc)
            version = None
            stop.wait(1.0)


def start_warm(service: Any, stop: threading.Event) -> bool:
    """For a warm pod: load its first model, then follow its selection; False otherwise."""
    identity: Identity = service.identity
    if not identity.warm:
        return False
    warm = WarmRuntime(
        service, identity.warm, identity.memory_request_gb, identity.keep_warm_seconds
    )
    service.warm = warm

    def switching() -> None:
        warm.first_load()
        warm.run(stop)

    def expiring() -> None:
        while not stop.wait(1.0):
            warm.expire()

    threading.Thread(target=switching, name="fovea-warm", daemon=True).start()
    threading.Thread(target=expiring, name="fovea-warm-expire", daemon=True).start()
    if identity.namespace and identity.selection:
        from fovea.kube import ClusterUnreachable, api_client

        try:
            api = api_client()
        except ClusterUnreachable as exc:
            log.error("cannot follow the selection (no warm switches): %s", exc)
            return True
        args = (api, identity.namespace, identity.selection, warm.want, stop)
        threading.Thread(
            target=follow_selection, args=args, name="fovea-follow", daemon=True
        ).start()
    return True
