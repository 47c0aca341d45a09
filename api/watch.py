"""List-then-watch of one resource kind, in a thread of its own.

Raw JSON all the way (no model deserialisation). The loop lists once, then
watches from the list's resourceVersion; a `410 Gone` or any broken
connection relists, with exponential backoff while the API server is away.
Every state change goes to a `Sink`, which is the cache.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from fovea.api.clients import ClientSource
from fovea.domain.backoff import Backoff

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
LIST_TIMEOUT_S = 30.0
FIRST_BACKOFF_S = 0.1


class Sink(Protocol):
    """Where a watcher delivers what it sees (implemented by the cache)."""

    def reset(self, kind: str, items: list[dict[str, Any]]) -> None: ...

    def apply(self, kind: str, event_type: str, obj: dict[str, Any]) -> None: ...

    def connection(self, kind: str, synced: bool, why: str = "") -> None: ...


@dataclass(frozen=True)
class Source:
    """How to list and watch one kind: a generated client's list method and its arguments."""

    kind: str
    # Given the current ApiClient, the list method (e.g. `CoreV1Api(api).list_node`).
    method: Callable[[client.ApiClient], Callable[..., Any]]
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


class Gone(Exception):
    """The watch's resourceVersion is too old: relist."""


class Watcher(threading.Thread):
    """Keeps one kind of the sink in step with the API server until stopped."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        clients: ClientSource,
        watch_timeout_s: int,
        max_backoff_s: float,
    ) -> None:
        super().__init__(name=f"watch-{source.kind}", daemon=True)
        self.source = source
        self.sink = sink
        self.clients = clients
        self.watch_timeout_s = watch_timeout_s
        self.max_backoff_s = max_backoff_s
        self._stop_event = threading.Event()
        self._response: Any = None

    def stop(self) -> None:
        """Ask the loop to end and unblock a read in progress."""
        self._stop_event.set()
        _shutdown(self._response)

    def run(self) -> None:
        backoff = Backoff(FIRST_BACKOFF_S, self.max_backoff_s)
        resource_version: str | None = None
        while not self._stop_event.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                    self.sink.connection(self.source.kind, True)
                for event in self._watch(resource_version):
                    resource_version = self._handle(event) or resource_version
                backoff.reset()  # a clean end: the server closed an idle watch
            except Gone:
                resource_version = None
            except Exception as exc:  # any failure means: we no longer know the truth
                if self._stop_event.is_set():
                    break
                if isinstance(exc, ApiException) and exc.status == 410:
                    resource_version = None  # too old to resume from: relist at once
                    continue
                resource_version = None
                self.sink.connection(self.source.kind, False, _why(exc))
                delay = backoff.next()
                log.info(
                    "watch of %s broken (%s); retrying in %.1fs",
                    self.source.kind,
                    _why(exc),
                    delay,
                )
                self._stop_event.wait(delay)

    def _call(self, **extra: Any) -> Any:
        kwargs = dict(self.source.kwargs)
        kwargs.update(extra)
        method = self.source.method(self.clients.get())
        return method(*self.source.args, _preload_content=False, **kwargs)

    def _list(self) -> str:
        response = self._call(_request_timeout=(CONNECT_TIMEOUT_S, LIST_TIMEOUT_S))
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        self.sink.reset(self.source.kind, list(body.get("items") or []))
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> Iterator[dict[str, Any]]:
        response = self._call(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s,
            # The read timeout outlives the server's own, so a silent dead peer is noticed.
            _request_timeout=(CONNECT_TIMEOUT_S, self.watch_timeout_s + 15),
        )
        self._response = response
        try:
            if self._stop_event.is_set():
                return
            for line in iter_resp_lines(response):
                if line:
                    yield json.loads(line)
                if self._stop_event.is_set():
                    return
        finally:
            self._response = None
            response.release_conn()

    def _handle(self, event: dict[str, Any]) -> str | None:
        """Apply one watch event; return the resourceVersion to resume from."""
        event_type = event.get("type")
        obj = event.get("object") or {}
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise ApiException(status=obj.get("code") or 500, reason=str(obj.get("message")))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            self.sink.apply(self.source.kind, event_type, obj)
        return str(version) if version else None


def _shutdown(response: Any) -> None:
    """Unblock a thread reading `response` (closing alone can wait on the SSL lock)."""
    if response is None:
        return
    try:
        sock = getattr(getattr(response, "connection", None), "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _why(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
