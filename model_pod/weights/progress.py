"""Fetch progress: bytes and rate, sent to the selection's `status.runtime.weights`.

One background thread sends the latest figures at most once per interval (1 s)
as a JSON merge patch that touches `status.runtime.weights` only, through the
same patch function the model container uses (bound to its own selection).
The final state (`Cached` or `Failed`) is sent at once and retried briefly.
A fetch never fails because its progress could not be reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fovea.domain.conditions import RuntimeState, WeightsPhase
from fovea.domain.units import format_bytes
from fovea.model_pod.report import backoff_seconds, is_retryable, rfc3339

log = logging.getLogger("fovea.model_pod.weights")

Send = Callable[[dict[str, Any]], None]
REPORT_INTERVAL_SECONDS = 1.0
LOG_INTERVAL_SECONDS = 5.0
FINAL_ATTEMPTS = 6

FETCHING = WeightsPhase.FETCHING.value
CACHED = WeightsPhase.CACHED.value
FAILED = WeightsPhase.FAILED.value


@dataclass
class Progress:
    """Bytes written so far (thread-safe): counted by downloads, or measured by `poll`."""

    bytes_total: int | None = None
    poll: Callable[[], int] | None = None  # for sources that write on their own (the hub)
    _done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, count: int) -> None:
        with self._lock:
            self._done += count

    @property
    def bytes_done(self) -> int:
        if self.poll is not None:
            try:
                return self.poll()
            except OSError:
                return self._done
        with self._lock:
            return self._done


@dataclass
class Outcome:
    """What the final report says."""

    phase: str
    message: str
    bytes_done: int = 0
    bytes_total: int | None = None
    fetched_bytes: int = 0
    sha256: str | None = None
    revision: str | None = None
    bytes_per_second: float | None = None


def weights_status(
    *,
    phase: str,
    source: str,
    message: str,
    bytes_done: int,
    bytes_total: int | None,
    fetched_bytes: int,
    bytes_per_second: float | None = None,
    sha256: str | None = None,
    revision: str | None = None,
) -> dict[str, Any]:
    """`status.runtime.weights` (the contract's shape); None sent as null removes a field."""
    return {
        "phase": phase,
        "source": source,
        "revision": revision,
        "sha256": sha256,
        "bytesDone": bytes_done,
        "bytesTotal": bytes_total,
        "bytesPerSecond": None if bytes_per_second is None else round(bytes_per_second, 1),
        "fetchedBytes": fetched_bytes,
        "message": message,
        "updatedAt": rfc3339(),
    }


# What an earlier pod's report names of its own model: not this pod's (null removes it).
EARLIER_POD_FIELDS: dict[str, None] = {"model": None, "modelId": None, "servingModel": None}


def weights_patch(status: dict[str, Any], pod: str | None = None) -> dict[str, Any]:
    """The merge patch: `runtime.weights`, and the pod it comes from with `state: Loading`.

    The operator reads `runtime.weights` only when `runtime.pod` is the pod it
    wants and `runtime.model` is unset or the selected option, and the admission
    policy refuses a model pod's write that leaves another pod's name there;
    `Loading` keeps an earlier pod's `Ready` from being read as this pod's, and the
    nulls remove what the earlier pod said it loads and serves (during
    make-before-break its `model` is the option it serves, which hid this report).
    """
    runtime: dict[str, Any] = {"weights": status}
    if pod:
        runtime.update(pod=pod, state=RuntimeState.LOADING.value, **EARLIER_POD_FIELDS)
    return {"status": {"runtime": runtime}}


class ProgressReporter:
    """Sends `Fetching` figures every interval while a fetch runs, then the outcome."""

    def __init__(
        self,
        send: Send | None,
        source: str,
        pod: str | None = None,
        interval: float = REPORT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._source = source
        self._pod = pod
        self._interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = Progress()
        self._message = "starting"
        self._revision: str | None = None
        self._started = clock()
        self._window: tuple[float, int] = (self._started, 0)
        self._last_log = 0.0
        self._send_lock = threading.Lock()  # one report at a time, in order
        self.sent: list[dict[str, Any]] = []  # every status delivered (for logs and tests)
        self.final: dict[str, Any] | None = None  # the outcome, delivered or not

    def start(self, progress: Progress, message: str, revision: str | None = None) -> None:
        """Report `progress` from now on (a new Progress for each attempt is fine)."""
        self._progress = progress
        self._message = message
        self._revision = revision
        if self._thread is None:
            self._started = self._clock()
            self._window = (self._started, 0)
            self._thread = threading.Thread(target=self._run, name="fovea-fetch-report")
            self._thread.daemon = True
            self._thread.start()
        self._deliver(self._fetching(), final=False)

    def note(self, message: str) -> None:
        """Change the human message (a retry, a wait) and send it now."""
        self._message = message
        self._deliver(self._fetching(), final=False)

    def finish(self, outcome: Outcome) -> dict[str, Any]:
        """Stop the periodic reports and deliver the outcome (retrying briefly)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        status = weights_status(
            phase=outcome.phase,
            source=self._source,
            message=outcome.message,
            bytes_done=outcome.bytes_done,
            bytes_total=outcome.bytes_total,
            fetched_bytes=outcome.fetched_bytes,
            bytes_per_second=outcome.bytes_per_second,
            sha256=outcome.sha256,
            revision=outcome.revision or self._revision,
        )
        self.final = status
        self._deliver(status, final=True)
        return status

    # --- internals ---------------------------------------------------------------------

    def _fetching(self) -> dict[str, Any]:
        now = self._clock()
        done = self._progress.bytes_done
        since, done_then = self._window
        rate = (done - done_then) / (now - since) if now - since >= 0.2 else None
        if rate is not None:
            self._window = (now, done)
        total = self._progress.bytes_total
        return weights_status(
            phase=FETCHING,
            source=self._source,
            message=self._message,
            bytes_done=done,
            bytes_total=total,
            fetched_bytes=done,
            bytes_per_second=max(rate, 0.0) if rate is not None else None,
            revision=self._revision,
        )

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._send_lock:
                if not self._stop.is_set():
                    self._deliver_now(self._fetching(), final=False)

    def _deliver(self, status: dict[str, Any], final: bool) -> None:
        with self._send_lock:
            self._deliver_now(status, final)

    def _deliver_now(self, status: dict[str, Any], final: bool) -> None:
        now = self._clock()
        if final or now - self._last_log >= LOG_INTERVAL_SECONDS:
            self._last_log = now
            total = status["bytesTotal"]
            log.info(
                "%s %s: %s%s - %s",
                status["phase"],
                self._source,
                format_bytes(status["bytesDone"]),
                f" of {format_bytes(total)}" if total else "",
                status["message"],
            )
        if self._send is None:
            self.sent.append(status)
            return
        attempts = FINAL_ATTEMPTS if final else 1
        for attempt in range(attempts):
            try:
                self._send(weights_patch(status, self._pod))
                self.sent.append(status)
                return
            except Exception as exc:  # reporting never ends the fetch
                log.warning("weights status report failed: %s", exc)
                if not is_retryable(exc) or attempt + 1 == attempts:
                    return
                time.sleep(backoff_seconds(attempt))
