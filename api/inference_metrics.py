"""The inference route's figures, per task and model, in the app's Prometheus registry.

- `fovea_inference_requests_total{task, model, code}`: answers by HTTP status
  (a refusal counts too, under the model it was for, "" when none).
- `fovea_inference_request_duration_seconds{task, model}`: from arrival to the
  end of the answer (held time included).
- `fovea_inference_queue_length{task}`: requests held now.
- `fovea_inference_hold_seconds{task}`: how long held requests waited.

`stats()` is the same, summed for the board and `GET /api/models/inference`:
per task, the requests held now and the answers of the last minute.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
HOLD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
RATE_WINDOW_S = 60.0


class InferenceMetrics:
    """Counters of the route, and a one-minute window of answers per task for the board."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "fovea_inference_requests",
            "Requests of the inference route, by task, model that answered and HTTP status",
            ["task", "model", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "fovea_inference_request_duration_seconds",
            "Time from a request's arrival to its answer's end, held time included",
            ["task", "model"],
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self.queue_length = Gauge(
            "fovea_inference_queue_length",
            "Requests held now while the task's model is not Ready",
            ["task"],
            registry=registry,
        )
        self.hold = Histogram(
            "fovea_inference_hold_seconds",
            "How long held requests waited for a Ready model",
            ["task"],
            registry=registry,
            buckets=HOLD_BUCKETS,
        )
        self._recent: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._held: dict[str, int] = {}

    def answered(self, task: str, model: str, code: int, started: float) -> None:
        now = time.monotonic()
        self.requests.labels(task, model, str(code)).inc()
        self.duration.labels(task, model).observe(now - started)
        recent = self._recent[task]
        recent.append((now, code))
        while recent and recent[0][0] < now - RATE_WINDOW_S:
            recent.popleft()

    def queue(self, task: str, length: int) -> None:
        self._held[task] = length
        self.queue_length.labels(task).set(length)

    def held(self, task: str, seconds: float) -> None:
        self.hold.labels(task).observe(seconds)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per task: requests held now, answers per second and errors over the last minute."""
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for task in sorted(set(self._recent) | set(self._held)):
            recent = [code for t, code in self._recent.get(task, ()) if t >= now - RATE_WINDOW_S]
            out[task] = {
                "queued": self._held.get(task, 0),
                "requests_per_second": round(len(recent) / RATE_WINDOW_S, 3),
                "errors_last_minute": sum(1 for code in recent if code >= 500 or code == 429),
                "answers_last_minute": len(recent),
            }
        return out
