"""List-then-watch of one resource kind, in a thread of its own.

Shared by the API's cache (`fovea.api.cache`) and the operator's
(`fovea.operator.cache`). Raw JSON all the way (no model deserialisation).
The loop lists once, then watches from the list's resourceVersion; a
`410 Gone` or any broken connection relists, with exponential backoff while
the API server is away. With `resync_s`, it also relists that often (the
safety net for an event the cache missed: the fresh list replaces the
store). A source marked `optional` that the server refuses (403) or does
not serve (404) is an empty, synced kind, listed again at each resync.
Every state change goes to a `Sink`, which is the cache.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from fovea.domain.backoff import Backoff

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
LIST_TIMEOUT_S = 30.0
FIRST_BACKOFF_S = 0.1
UNSERVED = ""  # the "resourceVersion" of an optional kind the server refused


class Clients(Protocol):
    """Hands out the ApiClient to use now (`fovea.api.clients.ClientSource`, or a fixed one)."""

    def get(self) -> client.ApiClient: ...


class Fixed:
    """Always the same ApiClient."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def get(self) -> client.ApiClient:
        return self.api


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
    # 403 or 404 at the list: an empty kind, not a broken one (an optional API, or a
    # right the deployment does not grant).
    optional: bool = False


class Gone(Exception):
    """The watch's resourceVersion is too old: relist."""


class Watcher(threading.Thread):
    """Keeps one kind of the sink in step with the API server until stopped."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        clients: Clients,
        watch_timeout_s: int,
        max_backoff_s: float,
        resync_s: float | None = None,
    ) -> None:
        super().__init__(name=f"watch-{source.kind}", daemon=True)
        self.source = source
        self.sink = sink
        self.clients = clients
        self.watch_timeout_s = watch_timeout_s
        self.max_backoff_s = max_backoff_s
        self.resync_s = resync_s
        self._listed_at = 0.0
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
                if resource_version == UNSERVED:  # optional and refused: look again later
                    self._stop_event.wait(self.resync_s or self.watch_timeout_s)
                    resource_version = None
                    continue
                for event in self._watch(resource_version):
                    resource_version = self._handle(event) or resource_version
                backoff.reset()  # a clean end: the server closed an idle watch
                if self._resync_in() <= 0:
                    resource_version = None  # the safety net: a fresh list replaces the store
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

    def _resync_in(self) -> float:
        """Seconds until the next relist is due (the watch timeout when there is no resync)."""
        if self.resync_s is None:
            return float(self.watch_timeout_s)
        return self._listed_at + self.resync_s - time.monotonic()

    def _call(self, **extra: Any) -> Any:
        kwargs = dict(self.source.kwargs)
        kwargs.update(extra)
        method = self.source.method(self.clients.get())
        return method(*self.source.args, _preload_content=False, **kwargs)

    def _list(self) -> str:
        self._listed_at = time.monotonic()
        try:
            response = self._call(_request_timeout=(CONNECT_TIMEOUT_S, LIST_TIMEOUT_S))
        except ApiException as exc:
            if not (self.source.optional and exc.status in (403, 404)):
                raise
            self.sink.reset(self.source.kind, [])
            return UNSERVED
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        self.sink.reset(self.source.kind, list(body.get("items") or []))
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> Iterator[dict[str, Any]]:
        # The server ends the watch when the next relist is due (at least a second on).
        timeout = max(1, min(self.watch_timeout_s, math.ceil(self._resync_in())))
        response = self._call(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            # The read timeout outlives the server's own, so a silent dead peer is noticed.
            _request_timeout=(CONNECT_TIMEOUT_S, timeout + 15),
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
            # Closed, not only released: a stream left unfinished (a stop, a 410 raised from
            # an event, an error) would go back to the pool with the rest of the watch still
            # on the wire, and the next request on that connection (the relist) read it and
            # timed out after 30 s. Closing costs a new connection per watch, every few minutes.
            response.close()
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
