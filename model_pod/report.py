"""Reporting `status.runtime` of this process's own ModelSelection, whatever the API server does.

One background thread owns all writes. Callers set the latest report (or
touch last use); the thread sends it as a JSON merge patch to the status
subresource, retrying with backoff on connection errors, 5xx, 409 and 429,
and later states simply replace earlier unsent ones. It then sends a
heartbeat periodically. Nothing here raises into the caller: a model pod
that cannot report keeps serving and keeps trying.

The patch function is bound to one namespace and name when it is made
(`selection_patcher`); there is no way to write another selection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from fovea.domain import constants as c
from fovea.domain.backoff import exponential
from fovea.domain.resources import RuntimeReport

log = logging.getLogger("fovea.model_pod.report")

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_SECONDS = 10.0
DEFAULT_HEARTBEAT_SECONDS = 30.0
# Last use is what the operator's LRU reads; a burst of requests is one write.
DEFAULT_LAST_USED_FLUSH_SECONDS = 2.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 15.0
RETRYABLE_STATUS = frozenset({409, 429})

Send = Callable[[dict[str, Any]], None]


def rfc3339(moment: datetime | None = None) -> str:
    """A UTC timestamp as Kubernetes writes them: 2025-01-31T12:00:00Z."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def runtime_patch(
    report: RuntimeReport, stale_breakdown_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """The merge patch that makes `status.runtime` equal `report`.

    Fields that are None are sent as null, which a merge patch reads as
    "remove": a Ready report clears the reason of an earlier Failed one.
    Breakdown keys sent before but absent now are removed the same way.
    """
    # `weights` belongs to the fetch-weights container: never sent (a null would clear it).
    runtime = report.model_dump(by_alias=True, mode="json", exclude={"weights"})
    breakdown: dict[str, float | None] = {key: None for key in stale_breakdown_keys}
    breakdown.update(runtime.get("memoryBreakdown") or {})
    runtime["memoryBreakdown"] = breakdown
    return {"status": {"runtime": runtime}}


def is_retryable(exc: BaseException) -> bool:
    """True for failures that go away on their own: no connection, 5xx, 409, 429."""
    status = getattr(exc, "status", None)
    if type(exc).__name__.endswith("ApiException") or hasattr(exc, "status"):
        return status in (None, 0) or status in RETRYABLE_STATUS or int(status) >= 500
    # urllib3's errors (MaxRetryError, ProtocolError, ...) and socket errors.
    import urllib3.exceptions

    return isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError)


def backoff_seconds(attempt: int) -> float:
    """Delay before retry number `attempt` (0-based): 0.5 s doubling, at most 15 s."""
    return exponential(attempt, BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS)


def selection_patcher(api_client: Any, namespace: str, name: str) -> Send:
    """A send function that merge-patches the status of exactly one ModelSelection."""
    from kubernetes import client

    api = client.CustomObjectsApi(api_client)

    def send(body: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            namespace,
            c.SELECTION_PLURAL,
            name,
            body,
            _content_type=MERGE_PATCH,
            _request_timeout=REQUEST_TIMEOUT_SECONDS,
        )

    return send


class Reporter:
    """Delivers the latest RuntimeReport, then heartbeats, from one background thread."""

    def __init__(
        self,
        send: Send,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        last_used_flush_seconds: float = DEFAULT_LAST_USED_FLUSH_SECONDS,
        backoff: Callable[[int], float] = backoff_seconds,
    ) -> None:
        self._send = send
        self._backoff = backoff
        self._heartbeat = heartbeat_seconds
        self._flush_delay = last_used_flush_seconds
        self._cond = threading.Condition()
        self._report: RuntimeReport | None = None
        self._version = 0  # bumped by every change; the thread sends the newest
        self._delivered_version = 0
        self._due: float | None = None
        self._stopping = False
        self._sent_breakdown: set[str] = set()
        self._thread: threading.Thread | None = None
        self.delivered: RuntimeReport | None = None
        self.failures = 0  # failed attempts so far (for logs and tests)

    # --- what callers use --------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fovea-reporter", daemon=True)
        self._thread.start()

    def set(self, report: RuntimeReport) -> None:
        """Make `report` the one to deliver now (last use is kept if it has none)."""
        with self._cond:
            if report.last_used is None and self._report is not None:
                report = report.model_copy(update={"last_used": self._report.last_used})
            self._report = report
            self._version += 1
            self._due = time.monotonic()
            self._cond.notify_all()

    def touch(self, moment: datetime | None = None) -> None:
        """Record a use now; it is delivered within the flush delay."""
        with self._cond:
            if self._report is None:
                return
            self._report = self._report.model_copy(update={"last_used": rfc3339(moment)})
            self._version += 1
            soon = time.monotonic() + self._flush_delay
            self._due = soon if self._due is None else min(self._due, soon)
            self._cond.notify_all()

    @property
    def current(self) -> RuntimeReport | None:
        with self._cond:
            return self._report

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until the latest report has been delivered; True if it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._delivered_version < self._version:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Deliver what is pending (briefly), then end the thread."""
        self.wait_delivered(flush_timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=flush_timeout)

    # --- the thread ------------------------------------------------------------------

    def _next(self) -> tuple[RuntimeReport, int] | None:
        """Wait until a send is due; the report and its version, or None to stop."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._report is not None and self._due is not None and self._due <= now:
                    self._due = None
                    report = self._report.model_copy(update={"heartbeat": rfc3339()})
                    return report, self._version
                timeout = None if self._due is None else self._due - now
                self._cond.wait(timeout)
            return None

    def _run(self) -> None:
        attempt = 0
        while (item := self._next()) is not None:
            report, version = item
            try:
                self._send(
                    runtime_patch(report, self._sent_breakdown - set(report.memory_breakdown))
                )
            except Exception as exc:  # never let reporting end the process
                self.failures += 1
                retry = is_retryable(exc)
                delay = self._backoff(attempt) if retry else self._heartbeat
                attempt += 1
                log.warning(
                    "status report failed (%s; %s in %.1fs): %s",
                    "retrying" if retry else "not retryable, trying again",
                    f"attempt {attempt}",
                    delay,
                    _describe(exc),
                )
                self._schedule(time.monotonic() + delay)
                continue
            attempt = 0
            self._sent_breakdown = set(report.memory_breakdown)
            with self._cond:
                self.delivered = report
                self._delivered_version = max(self._delivered_version, version)
                heartbeat_at = time.monotonic() + self._heartbeat
                self._due = heartbeat_at if self._due is None else min(self._due, heartbeat_at)
                self._cond.notify_all()

    def _schedule(self, when: float) -> None:
        with self._cond:
            self._due = when if self._due is None else min(self._due, when)
            self._cond.notify_all()


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status is not None:
        return f"{type(exc).__name__} {status} {reason or ''}".strip()
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
