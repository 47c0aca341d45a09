"""Plain-JSON requests and watches through the one Kubernetes client (`fovea.kube`).

The node agent reads and writes whole pod and node bodies as dicts: this
adapter keeps the client's connection handling, TLS and credentials, and
skips building typed models for every object (the agent's hot path).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client
from urllib3.exceptions import HTTPError, ProtocolError

from fovea.kube import api_client

MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"


class ApiError(RuntimeError):
    """A non-2xx answer from the API server; status 0 when it could not be reached."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"{status} {reason}: {message}")
        self.status = status

    @property
    def transient(self) -> bool:
        """Worth retrying: unreachable, throttled, or a server-side error."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class Rest:
    """JSON in, JSON out, against one cluster; safe to share between threads."""

    def __init__(self, kubeconfig: Path, pool_size: int = 64) -> None:
        configuration = api_client(str(kubeconfig)).configuration
        # One connection per concurrent caller (watches hold theirs for minutes).
        configuration.connection_pool_maxsize = pool_size
        self._api = client.ApiClient(configuration)
        self._watches: set[Any] = set()
        self._lock = threading.Lock()
        self._closed = False

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None,
        body: object,
        content_type: str,
        timeout: float | tuple[float, float],
    ) -> Any:
        params = [
            (k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items()
        ]
        headers = {"Accept": JSON, "Content-Type": content_type}
        request = self._api.param_serialize(
            method,
            path,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self._api.call_api(*request, _request_timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = JSON,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """Send one request; return the decoded body, or raise ApiError."""
        try:
            response = self._send(method, path, query, body, content_type, timeout)
            data = response.read()
        except (OSError, HTTPError) as exc:
            raise ApiError(0, "unreachable", str(exc)) from exc
        if not 200 <= response.status <= 299:
            raise ApiError(response.status, response.reason or "", data.decode(errors="replace"))
        decoded = json.loads(data) if data else {}
        return decoded if isinstance(decoded, dict) else {}

    def get(self, path: str, **query: str | int | bool) -> dict[str, Any]:
        return self.request("GET", path, query=query)

    def watch(
        self, path: str, resource_version: str, timeout_s: int, **query: str | int | bool
    ) -> Iterator[dict[str, Any]]:
        """Yield watch events ({type, object}) from `resource_version` for at most `timeout_s`.

        A 410 (Gone) arrives as an ERROR event; the caller relists.
        """
        params: dict[str, str | int | bool] = {
            **query,
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_s,
        }
        response = self._send("GET", path, params, None, JSON, (5.0, timeout_s + 30.0))
        raw = response.response
        with self._lock:
            self._watches.add(raw)
        try:
            if not 200 <= response.status <= 299:
                text = raw.read().decode(errors="replace")
                raise ApiError(response.status, response.reason or "", text)
            buffer = b""
            for chunk in raw.stream(amt=65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except (OSError, ProtocolError):
            if not self._closed:
                raise
        finally:
            with self._lock:
                self._watches.discard(raw)
            raw.release_conn()

    def close(self) -> None:
        """End open watches (their readers see the stream end) and drop the connections."""
        self._closed = True
        with self._lock:
            watches = list(self._watches)
        for raw in watches:
            raw.shutdown()
        self._api.close()
