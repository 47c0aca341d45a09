"""Prometheus gauges for dashboards and alerts (`manifests/monitoring/`), read at scrape.

- `fovea_selection_phase{task, model, phase}`: 1 for each selection of the
  API's namespace, labelled with its phase (`Failed`, `CPUFallback`, ...):
  the alerts "model failed to load" and "on the CPU fallback for N minutes";
- `fovea_selection_degraded{task, model}`: 1 while a model runs on
  the CPU for want of GPU memory (phase `CPUFallback`);
- `fovea_selection_idle_unloaded_timestamp_seconds{task, model}`: when the
  operator last unloaded the model for idleness (keepAlive), while it stays
  unloaded (`changes()` counts idle unloads);
- `fovea_gpu_memory_threshold_gb{node, gpu}`: `offload_threshold` x the GPU's
  memory: the alert "GPU over threshold" compares `fovea_gpu_memory_allocated_gb`
  with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fovea.api.cache import Snapshot
from fovea.domain.budget import epoch_seconds
from fovea.domain.resources import Phase


class SelectionCollector(Collector):
    """Phases of the namespace's selections, and each GPU's threshold line."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._snapshot()
        state = snap.state
        phase = GaugeMetricFamily(
            "fovea_selection_phase",
            "1 per ModelSelection of the API's namespace, labelled with its phase",
            labels=["task", "model", "phase"],
        )
        degraded = GaugeMetricFamily(
            "fovea_selection_degraded",
            "1 while a model runs on the CPU for want of GPU memory",
            labels=["task", "model"],
        )
        idle = GaugeMetricFamily(
            "fovea_selection_idle_unloaded_timestamp_seconds",
            "When the operator unloaded an on-demand model unused for its keepAlive",
            labels=["task", "model"],
        )
        for task, sel in sorted(state.by_task.items()):
            model = sel.spec.model or ""
            phase.add_metric([task, model, str(sel.status.phase)], 1.0)
            if sel.status.phase == Phase.CPU_FALLBACK:
                degraded.add_metric([task, model], 1.0)
            unloaded = epoch_seconds(sel.status.idle_unloaded_at)
            if unloaded:
                idle.add_metric([task, model], unloaded)
        yield phase
        yield degraded
        yield idle

        threshold = state.catalog.inference.offload_threshold if state.catalog else 0.8
        line = GaugeMetricFamily(
            "fovea_gpu_memory_threshold_gb",
            "The offload threshold times the GPU's memory (GiB): the most the planner puts there",
            labels=["node", "gpu"],
        )
        for gpu in snap.gpus.gpus:
            line.add_metric([gpu.node, str(gpu.index)], gpu.memory_gib * threshold)
        yield line
