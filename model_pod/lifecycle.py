"""Load, warm up, measure, report: the life of the one model this process serves.

States follow `RuntimeReport.state`: Loading, then Ready (loaded, warm,
measured), or Failed with the reason. A failed model pod does not exit: it
keeps answering `/healthz` and answers `/readyz` with 503 and the reason, so
Kubernetes does not restart it into the same failure over and over (each
restart would reload weights and hammer the API server); the operator reads
the reason from status and decides what to do with the pod.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from fovea.domain.conditions import RuntimeState, SwitchPhase
from fovea.domain.messages import LoadFailure
from fovea.domain.resources import PhaseStamp, RuntimeReport
from fovea.domain.switch import stamp
from fovea.domain.units import format_size
from fovea.model_pod import measure
from fovea.model_pod.adapters.base import Adapter, LoadedModel
from fovea.model_pod.failures import Failure, failure_of
from fovea.model_pod.identity import Identity
from fovea.model_pod.report import Reporter

log = logging.getLogger("fovea.model_pod")

LOADING = RuntimeState.LOADING
READY = RuntimeState.READY
FAILED = RuntimeState.FAILED
SIMULATED_NOTE = "runs on the CPU: the node's GPU is simulated"


def process_started_at() -> datetime:
    """When this process began, to the kernel's tick (10 ms).

    psutil's create_time adds the start's ticks to the boot time, which Linux gives in
    whole seconds: up to a second early. The process's age on the boot clock is exact.
    """
    try:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return datetime.fromtimestamp(time.time() - age, UTC)
    except (OSError, IndexError, ValueError, AttributeError):  # not Linux
        return datetime.fromtimestamp(psutil.Process().create_time(), UTC)


class NotReady(RuntimeError):
    """The model is not loaded and warm (yet, or at all); the message says which."""


class ModelService:
    """The one model of this process, its state, and what is reported about it."""

    def __init__(self, identity: Identity, adapter: Adapter | None, reporter: Reporter | None):
        self.identity = identity
        self.adapter = adapter
        self.reporter = reporter
        self.state: RuntimeState = LOADING
        self.reason: str | None = None
        # The steps of the load, on this pod's clock (status.runtime.phases, domain/switch.py).
        self.phases: list[PhaseStamp] = [
            PhaseStamp(name=SwitchPhase.PROCESS_STARTED, at=stamp(process_started_at()))
        ]
        self.report: RuntimeReport = self._base_report(LOADING)
        self.loaded: LoadedModel | None = None
        self._predict_lock = (
            threading.Lock()
        )  # one forward pass at a time: memory stays as measured
        self.warm: Any = None  # a warm pod's switches (model_pod/warm.py), else None

    @property
    def ready(self) -> bool:
        return self.state == READY

    def _base_report(self, state: RuntimeState, reason: str | None = None) -> RuntimeReport:
        identity = self.identity
        return RuntimeReport(
            state=state,
            reason=reason,
            pod=identity.pod_name,
            model_id=identity.spec.model_id,
            model=identity.model,
            device=identity.device,
            simulated_gpu=identity.simulated_gpu,
            phases=list(self.phases),
        )

    def mark(self, phase: SwitchPhase, moment: datetime | None = None) -> None:
        """Record that a step of the load is done (now, unless `moment` says when)."""
        at = stamp(moment or datetime.now(UTC))
        self.phases = [*self.phases, PhaseStamp(name=phase, at=at)]

    def _publish(self, report: RuntimeReport) -> None:
        self.report = report
        if self.warm is not None:  # who serves, what is parked, the runtime's own memory
            report = report.model_copy(update=self.warm.fields())
        if self.reporter is not None:
            self.reporter.set(report)

    @property
    def predict_lock(self) -> threading.Lock:
        """Held by each forward pass; a warm switch swaps models under it."""
        return self._predict_lock

    def publish_warm(self, report: RuntimeReport) -> None:
        """Report a warm switch's state (the serving model's report stays `self.report`
        unless `report` is about the model serving now)."""
        if report.model == self.identity.model and report.state == READY:
            self.report = report
        if self.reporter is not None:
            self.reporter.set(report.model_copy(update=self.warm.fields()))

    def republish(self) -> None:
        """Report the serving model again (its warm fields changed, or it is wanted again)."""
        self._publish(self.report)

    def fail(self, failure: Failure) -> None:
        """Enter Failed with the failure and its reason (kept for /readyz and reported)."""
        kind, reason = failure
        log.error("model failed (%s): %s", kind, reason)
        self.state = FAILED
        self.reason = reason
        loaded = self.loaded
        self._publish(
            self._base_report(FAILED, reason).model_copy(
                update={
                    "failure": kind,
                    "random_weights": bool(loaded and loaded.random_weights),
                }
            )
        )

    def load(self) -> None:
        """Load, warm up and measure the model; end in Ready or Failed, never raise."""
        self._publish(self._base_report(LOADING))
        if self.adapter is None:
            self.fail((LoadFailure.LOAD_ERROR, self.reason or "no adapter"))
            return
        adapter = self.adapter
        device = self.identity.device
        stage = "load"
        try:
            prepare = getattr(adapter, "prepare", None)
            if prepare is not None:  # the framework's imports, before the model
                prepare()
            self.mark(SwitchPhase.RUNTIME_READY)
            base = measure.baseline(device)
            started = time.perf_counter()
            self.loaded = adapter.load(device)
            load_seconds = time.perf_counter() - started
            self.mark(SwitchPhase.LOADED)
            stage = "warm up"
            warm_started = time.perf_counter()
            adapter.warmup(self.identity.spec.batch_size)
            warm_seconds = time.perf_counter() - warm_started
            stage = "measure"
            reading = self._measure(base)
            self.mark(SwitchPhase.WARMED)
        except Exception as exc:  # every failure becomes a reported reason
            log.exception("model %s failed to %s", self.identity.spec.model_id, stage)
            self.fail(failure_of(exc, stage))
            self._release()
            return
        self.state = READY
        self.reason = self._ready_reason(reading.method)
        log.info(
            "model %s ready on %s: %s (%s), load %.2fs, warm-up %.2fs",
            self.identity.spec.model_id,
            device,
            format_size(reading.measured_gib),
            reading.method,
            load_seconds,
            warm_seconds,
        )
        self._publish(
            self._base_report(READY, self.reason).model_copy(
                update={
                    "random_weights": self.loaded.random_weights,
                    "measured_memory_gb": measure.gib(reading.measured_bytes),
                    "memory_breakdown": {
                        **reading.breakdown,
                        "warmupSeconds": round(warm_seconds, 3),
                    },
                    "load_time_seconds": round(load_seconds, 3),
                }
            )
        )

    def _measure(self, base: measure.Baseline) -> measure.MemoryReading:
        assert self.adapter is not None and self.loaded is not None
        module = self.adapter.module
        if module is not None:
            return measure.module_reading(self.identity.device, module, base)
        if self.loaded.pid is None:
            raise RuntimeError("the adapter holds no module and names no process to measure")
        return measure.engine_reading(self.identity.device, self.loaded.pid, base)

    def _ready_reason(self, method: str) -> str:
        assert self.loaded is not None
        parts = [self.loaded.source, f"memory measured as {method}"]
        if self.identity.simulated_gpu:
            parts.append(SIMULATED_NOTE)
        return "; ".join(parts)

    def _release(self) -> None:
        if self.adapter is not None:
            try:
                self.adapter.close()
            except Exception:  # freeing after a failure must not hide the failure
                log.exception("closing the adapter failed")

    def check(self) -> None:
        """Notice a loaded model that stopped serving (an engine's death) and report it."""
        if self.state == READY and self.adapter is not None:
            problem = self.adapter.failure()
            if problem:
                self.fail((LoadFailure.STOPPED_SERVING, problem))

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one request; raise NotReady or the adapter's PredictError."""
        return self.answer(payload)[0]

    def answer(self, payload: dict[str, Any]) -> tuple[dict[str, Any], Identity]:
        """`predict`, and the identity of the model that computed the answer (a warm
        switch may swap models between two requests, never within one)."""
        self.check()
        if not self.ready or self.adapter is None:
            raise NotReady(self.reason or f"model is {self.state.lower()}")
        with self._predict_lock:
            identity, loaded = self.identity, self.loaded
            answer = self.adapter.predict(payload)
        if self.reporter is not None:
            self.reporter.touch()
        body = {
            **answer,
            "modelId": identity.spec.model_id,
            "device": identity.device,
            "randomWeights": bool(loaded and loaded.random_weights),
        }
        return body, identity

    def close(self) -> None:
        self._release()
