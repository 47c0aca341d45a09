"""Draining on SIGTERM: leave the endpoints first, keep answering, then stop.

When Kubernetes ends a pod it sends SIGTERM and, at the same time, starts
removing the pod from its Services' EndpointSlices; clients that have not seen
the change yet keep sending requests for a moment. So on SIGTERM the model pod
turns unready at once (`/readyz` answers 503 "draining"), goes on accepting
and answering requests for the drain period, and only then shuts uvicorn down
gracefully: it stops accepting, finishes the requests in flight, and runs the
app's shutdown (which stops an engine child). The drain period never reaches
into the pod's terminationGracePeriodSeconds minus a margin, so the kubelet's
SIGKILL never cuts a request that the drain let in.

A second SIGTERM, or SIGINT, shuts down at once (gracefully, as uvicorn does).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import uvicorn

DEFAULT_DRAIN_SECONDS = 3.0
DEFAULT_GRACE_SECONDS = 30.0  # Kubernetes' default terminationGracePeriodSeconds
# Kept from the grace period for finishing the requests in flight and the cleanup.
GRACE_MARGIN_SECONDS = 2.0
DRAINING_REASON = "draining: the pod is shutting down"


def drain_period(wanted_s: float, grace_s: float) -> float:
    """The drain period: `wanted_s`, but never past the grace period less the margin."""
    return max(0.0, min(wanted_s, grace_s - GRACE_MARGIN_SECONDS))


class Drain:
    """Whether the server is draining (set once, from the signal handler)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._started = threading.Event()

    @property
    def draining(self) -> bool:
        return self._started.is_set()

    def begin(self) -> bool:
        """Start draining; False if it had started already."""
        if self._started.is_set():
            return False
        self._started.set()
        return True


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining for `drain.period_s` on the first SIGTERM."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.drain.period_s > 0 and self.drain.begin():
            # uvicorn's own handling (graceful shutdown, then the signal re-raised so
            # the process ends as Kubernetes expects) once the drain period is over.
            timer = threading.Timer(self.drain.period_s, super().handle_exit, (sig, None))
            timer.daemon = True
            self._timer = timer
            timer.start()
            return
        self.drain.begin()
        if self._timer is not None:
            self._timer.cancel()
        super().handle_exit(sig, frame)
