"""Prometheus metrics: request latency (ASGI middleware) and memory gauges (read at scrape).

Each app has its own registry (tests build many apps). The gauges are
computed from the cache's current snapshot when Prometheus scrapes, so the
request path pays nothing for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fovea.api.cache import Snapshot
from fovea.api.quota_view import quota_view
from fovea.api.responses import vram_by_gpu

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0)


def request_histogram(registry: CollectorRegistry) -> Histogram:
    """The request latency histogram, registered in `registry`."""
    return Histogram(
        "fovea_api_request_duration_seconds",
        "Time to answer an HTTP request, by route template",
        ["method", "route", "status"],
        registry=registry,
        buckets=LATENCY_BUCKETS,
    )


class LatencyMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would cost more than the routes)."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # The template, never the raw path: raw paths would explode the label set.
            template = getattr(route, "path", None) or "unmatched"
            key = (scope["method"], template, status)
            child = self._children.get(key)
            if child is None:
                child = self.histogram.labels(*key)
                self._children[key] = child
            child.observe(time.perf_counter() - start)


class SnapshotCollector(Collector):
    """Memory per loaded model and per GPU, and the cache's sync state."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._snapshot()
        synced = GaugeMetricFamily(
            "fovea_api_cache_synced", "1 when every watch of the API's cache is connected"
        )
        synced.add_metric([], 1.0 if snap.synced else 0.0)
        yield synced

        model = GaugeMetricFamily(
            "fovea_model_memory_gb",
            "Memory a loaded model's pod measured (GiB), by task",
            labels=["task", "model_id", "device", "node", "simulated_gpu"],
        )
        for m in snap.loaded:
            if m.memory_gib is None:
                continue  # not measured: no sample rather than a made-up 0
            model.add_metric(
                [
                    m.task,
                    m.runtime.model_id or "",
                    m.runtime.device or "",
                    m.selection.status.node or "",
                    str(m.runtime.simulated_gpu).lower(),
                ],
                m.memory_gib,
            )
        yield model

        total = GaugeMetricFamily(
            "fovea_gpu_memory_total_gb", "GPU memory (GiB) from Nodes", labels=["node", "gpu"]
        )
        allocated = GaugeMetricFamily(
            "fovea_gpu_memory_allocated_gb",
            "Measured memory of loaded models (GiB) on each GPU",
            labels=["node", "gpu"],
        )
        used = vram_by_gpu(snap.state, snap.loaded)
        for gpu in snap.gpus.gpus:
            labels = [gpu.node, str(gpu.index)]
            total.add_metric(labels, gpu.memory_gib)
            allocated.add_metric(labels, used.get((gpu.node, gpu.index), 0.0))
        yield total
        yield allocated

        view = quota_view(snap.state)  # this namespace's GPU-memory quota (docs/tenants.md)
        quota = GaugeMetricFamily(
            "fovea_api_namespace_gpu_memory_quota_gb",
            "The API's namespace's GPU-memory quota (GiB), when it has one",
            labels=["namespace"],
        )
        quota_used = GaugeMetricFamily(
            "fovea_api_namespace_gpu_memory_used_gb",
            "Declared memory (GiB) of the namespace's selections placed on GPUs, under a quota",
            labels=["namespace"],
        )
        if view is not None:
            if view["gpu_memory_quota_gb"] is not None:
                quota.add_metric([view["namespace"]], view["gpu_memory_quota_gb"])
            quota_used.add_metric([view["namespace"]], view["used_gb"])
        yield quota
        yield quota_used
