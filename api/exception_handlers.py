"""Every error becomes the contract's `{"error": "<message>"}` here, and only here."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fovea.api.errors import ApiError, shown

log = logging.getLogger(__name__)

MAX_LOGGED_CHARS = 1000  # an error's message in the log (it echoes at most MAX_ECHO_CHARS of input)

# The contract's words for an unexpected failure, per route.
UNEXPECTED = {
    "/api/models/config": "Model service unavailable",
    "/api/models/status": "Failed to query model status",
    "/api/models/validate": "Failed to validate memory budget",
    "/api/models/select": "Failed to update model selection",
}


def error_response(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The contract's error body."""
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if exc.status_code >= 500:
        log.warning(
            "%s %s -> %d: %s",
            request.method,
            shown(request.url.path),
            exc.status_code,
            shown(exc.message, MAX_LOGGED_CHARS),
        )
    return error_response(exc.status_code, exc.message)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, validation_message(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, shown(request.url.path), exc_info=exc)
    return error_response(500, UNEXPECTED.get(request.url.path, "Internal server error"))


def validation_message(exc: RequestValidationError) -> str:
    """One sentence naming the first bad parameter (not FastAPI's 422 list)."""
    errors = exc.errors()
    if not errors:
        return "Invalid request"
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
    where = ".".join(loc) or "request"
    if first.get("type") == "missing":
        return f"Missing required parameter: {shown(where)}"
    return f"Invalid value for {shown(where)}: {shown(str(first.get('msg', 'invalid')))}"


def install(app: FastAPI) -> None:
    """Register every handler on `app`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
