"""The REST API as the command line reaches it: one httpx client, errors with exit codes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_API = "http://localhost:3001"
ENV_API = "FOVEA_API"
ENV_TOKEN = "FOVEA_API_TOKEN"

# Exit codes (docs/cli.md).
OK = 0
NOT_SO = 1  # validate: does not fit; select/load --wait: failed to load or timed out
REFUSED = 2  # usage error, or the API refused the request (unknown task or model, ...)
UNAUTHORIZED = 3  # the bearer token is missing or wrong
UNREACHABLE = 4  # the API cannot be reached, or it (or the cluster behind it) failed


class CliError(Exception):
    """A failure to print as one line, and the process's exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def exit_code_for(status: int) -> int:
    """The exit code of an HTTP error status."""
    if status == 401:
        return UNAUTHORIZED
    if status >= 500:
        return UNREACHABLE
    return REFUSED


def error_message(status: int, body: bytes) -> str:
    """The API's `{"error": ...}` message, else the status and the start of the body."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return str(parsed["error"])
    if isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
        return f"HTTP {status}: {parsed['detail']}"
    text = body.decode("utf-8", "replace").strip().splitlines()
    return f"HTTP {status}: {text[0][:200]}" if text else f"HTTP {status}"


@dataclass(frozen=True)
class Target:
    """Which API to talk to, and with which token."""

    url: str
    token: str | None

    @classmethod
    def from_args(cls, url: str | None, token: str | None) -> Target:
        url = url or os.environ.get(ENV_API) or DEFAULT_API
        token = token if token is not None else os.environ.get(ENV_TOKEN)
        return cls(url.rstrip("/"), token or None)


class Api:
    """GET and POST on the API; every failure becomes a CliError."""

    def __init__(self, target: Target, timeout_s: float = 30.0) -> None:
        headers = {"Accept": "application/json"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self.target = target
        self.http = httpx.Client(base_url=target.url, headers=headers, timeout=timeout_s)

    def get(self, path: str, **params: Any) -> Any:
        return self._json("GET", path, params)

    def post(self, path: str, **params: Any) -> Any:
        return self._json("POST", path, params)

    def stream(self, path: str, **params: Any) -> Iterator[bytes]:
        """The response body as it arrives (no read timeout: a followed log may be quiet)."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=None)
        try:
            with self.http.stream("GET", path, params=_clean(params), timeout=timeout) as resp:
                if resp.status_code >= 400:
                    raise self._failure(resp.status_code, resp.read())
                yield from resp.iter_bytes()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def close(self) -> None:
        self.http.close()

    def _json(self, method: str, path: str, params: dict[str, Any]) -> Any:
        try:
            resp = self.http.request(method, path, params=_clean(params))
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if resp.status_code >= 400:
            raise self._failure(resp.status_code, resp.content)
        try:
            return resp.json()
        except ValueError as exc:
            raise CliError(f"{self.target.url}{path} did not answer JSON", UNREACHABLE) from exc

    def _failure(self, status: int, body: bytes) -> CliError:
        return CliError(error_message(status, body), exit_code_for(status))

    def _unreachable(self, exc: httpx.TransportError) -> CliError:
        why = str(exc) or type(exc).__name__
        return CliError(f"cannot reach the API at {self.target.url}: {why}", UNREACHABLE)


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}
