"""A client's requests to the API server: counted, and held to a rate (QPS and burst).

The official Python client has no rate limiter (client-go's `rest.Config` has
QPS and Burst); this adds one the same way: a token bucket every request
takes a token from, `burst` tokens deep and refilled at `qps` per second, so
a burst of writes goes out at once and a long run of them at `qps`. A watch
takes one token when it opens, none while it streams. `qps <= 0` means no
limit. Each request is also reported as (verb, resource) to `count`, the
verbs named as Kubernetes' audit log names them (get, list, watch, create,
update, patch, delete).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client

Count = Callable[[str, str], None]


class TokenBucket:
    """`burst` tokens, refilled at `qps` per second; `take` waits for one (thread-safe)."""

    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"a rate limit needs a burst of at least 1, got {burst}")
        self.qps, self.burst = qps, max(1, burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = float(self.burst)
        self._at = clock()
        self._lock = threading.Lock()
        self.waited_s = 0.0  # total time requests waited for a token

    def wait_for(self) -> float:
        """Reserve a token; the seconds the caller must wait before using it."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
            self._at = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.qps
            self.waited_s += wait
            return wait

    def take(self) -> None:
        wait = self.wait_for()
        if wait > 0:
            self._sleep(wait)


def describe(method: str, url: str) -> tuple[str, str]:
    """(verb, resource) of one request: ("patch", "modelselections/status"), ("watch", "pods")."""
    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    name = sub = ""
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        resource = rest[2]
        name, sub = (rest[3] if len(rest) > 3 else ""), (rest[4] if len(rest) > 4 else "")
    elif rest:
        resource = rest[0]
        name, sub = (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
    else:
        resource = "discovery"
    watch = parse_qs(parsed.query).get("watch", [""])[0].lower() in ("true", "1")
    method = method.upper()
    if method == "GET":
        verb = "watch" if watch else "get" if name else "list"
    else:
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        verb = verbs.get(method, method.lower())
        if verb == "delete" and not name:
            verb = "deletecollection"
    return verb, f"{resource}/{sub}" if sub else resource


def instrument(
    api: client.ApiClient, qps: float = 0.0, burst: int = 1, count: Count | None = None
) -> TokenBucket:
    """Make every request of `api` take a token of a (qps, burst) bucket, and report it."""
    bucket = TokenBucket(qps, burst)
    rest: Any = api.rest_client
    request = rest.request

    def limited(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        bucket.take()
        if count is not None:
            count(*describe(method, url))
        return request(method, url, *args, **kwargs)

    rest.request = limited  # an instance attribute: GET, POST, ... call self.request
    return bucket
