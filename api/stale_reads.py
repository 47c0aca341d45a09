"""Reads through a control-plane outage: the last synced view, saying how stale it is.

The model pods keep serving while etcd or the API server restarts, so the API
keeps answering reads (`/config`, `/status`, `/validate`, the board, the
inspect routes) from its cache's last synced view for `stale_read_seconds`
after the view stopped being current, and marks every answer given meanwhile
with `X-Fovea-Stale-Seconds` (how long the view has not been current). Past
that time, or for a cache that never synced, reads answer 503 as writes do at
once (a write needs the API server).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fovea.api.cache import Snapshot

HEADER_STALE = "X-Fovea-Stale-Seconds"


def stale_seconds(snapshot: Snapshot, now: float) -> float | None:
    """How long `snapshot` has not been current (None: it is, or it never was)."""
    if snapshot.synced or snapshot.stale_since is None:
        return None
    return max(0.0, now - snapshot.stale_since)


def readable(snapshot: Snapshot, limit_s: float, now: float | None = None) -> bool:
    """Whether reads may answer from `snapshot`: synced, or stale for at most `limit_s`."""
    if snapshot.synced:
        return True
    stale = stale_seconds(snapshot, time.monotonic() if now is None else now)
    return stale is not None and stale <= limit_s


class StaleHeaderMiddleware:
    """Adds X-Fovea-Stale-Seconds to every answer given while the view is not current."""

    def __init__(self, app: ASGIApp, snapshot: Callable[[], Snapshot]) -> None:
        self.app = app
        self.snapshot = snapshot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                stale = stale_seconds(self.snapshot(), time.monotonic())
                if stale is not None:
                    headers = list(message.get("headers", []))
                    headers.append((HEADER_STALE.lower().encode(), f"{stale:.0f}".encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
