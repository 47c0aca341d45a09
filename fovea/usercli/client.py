"""The REST API as the command line reaches it: requests, and errors with exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from fovea.settings import ENV_API as ENV_API
from fovea.settings import ENV_TOKEN as ENV_TOKEN
from fovea.settings import get_settings

DEFAULT_API = "http://localhost:3001"

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


def token_hint(sent: bool) -> str:
    """What to do about a 401: where the token goes."""
    if sent:
        return f" (the token given by --token or ${ENV_TOKEN} is not the API's)"
    return f" (this API requires a token: pass --token TOKEN or set ${ENV_TOKEN})"


@dataclass(frozen=True)
class Answer:
    """A body POSTed as it is (`Api.send`): the status, headers (lower-cased) and bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Target:
    """Which API to talk to, and with which token."""

    url: str
    token: str | None

    @classmethod
    def from_args(cls, url: str | None, token: str | None) -> Target:
        settings = get_settings()
        url = url or settings.api_url or DEFAULT_API
        token = token if token is not None else settings.api_token
        return cls(url.rstrip("/"), token or None)


class Api:
    """GET and POST on the API; every failure becomes a CliError.

    The standard library's HTTP client: a command makes one to three
    requests, and importing httpx would cost more than all of them (bench/cli.py).
    """

    def __init__(self, target: Target, timeout_s: float = 30.0) -> None:
        self.headers = {"Accept": "application/json"}
        if target.token:
            self.headers["Authorization"] = f"Bearer {target.token}"
        self.target = target
        self.timeout_s = timeout_s

    def get(self, path: str, **params: Any) -> Any:
        return self._json("GET", path, params)

    def post(self, path: str, **params: Any) -> Any:
        return self._json("POST", path, params)

    def send(self, path: str, body: bytes, content_type: str, timeout_s: float) -> Answer:
        """POST `body` as it is (no query); the answer's status, headers and bytes."""
        headers = {"Content-Type": content_type, "Accept": "*/*"}
        with self._open("POST", path, {}, timeout_s, body, headers) as resp:
            return Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())

    def stream(self, path: str, **params: Any) -> Iterator[bytes]:
        """The response body as it arrives (no read timeout: a followed log may be quiet)."""
        with self._open("GET", path, params, timeout_s=None) as resp:
            while chunk := resp.read1(64 * 1024):
                yield chunk

    def close(self) -> None:
        """Nothing to release: each request has its own connection."""

    def _json(self, method: str, path: str, params: dict[str, Any]) -> Any:
        with self._open(method, path, params, self.timeout_s) as resp:
            body = resp.read()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise CliError(f"{self.target.url}{path} did not answer JSON", UNREACHABLE) from exc

    def _open(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        timeout_s: float | None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        query = urlencode(_clean(params), doseq=True)
        url = f"{self.target.url}{path}" + (f"?{query}" if query else "")
        if data is None and method == "POST":
            data = b""
        request = Request(
            url, method=method, headers={**self.headers, **(headers or {})}, data=data
        )
        try:
            return urlopen(request, timeout=timeout_s)
        except HTTPError as exc:
            message = error_message(exc.code, exc.read())
            if exc.code == 401:
                message += token_hint(self.target.token is not None)
            if exc.code == 429 and exc.headers.get("Retry-After"):
                message += f" (retry after {exc.headers['Retry-After']}s)"
            raise CliError(message, exit_code_for(exc.code)) from exc
        except TimeoutError as exc:  # connected, but no answer in time (a read, not a connect)
            raise CliError(
                f"{self.target.url}{path} gave no answer within {timeout_s:g}s", UNREACHABLE
            ) from exc
        except (URLError, OSError) as exc:
            why = getattr(exc, "reason", None) or exc
            raise CliError(
                f"cannot reach the API at {self.target.url}: {why}", UNREACHABLE
            ) from exc


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}
