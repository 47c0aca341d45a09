"""Annotated dependencies of the routes: the one place they are wired.

All are `async def`: FastAPI runs a plain `def` dependency in the thread pool,
which would cost more than the whole cached /status answer.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fovea.api.cache import ClusterCache
from fovea.api.errors import Unauthorized
from fovea.api.feed import ChangeFeed
from fovea.api.schemas import ErrorBody
from fovea.api.service import ModelService
from fovea.api.settings import Settings


async def _service(request: Request) -> ModelService:
    service: ModelService = request.app.state.service
    return service


async def _cache(request: Request) -> ClusterCache:
    cache: ClusterCache = request.app.state.cache
    return cache


async def _feed(request: Request) -> ChangeFeed:
    feed: ChangeFeed = request.app.state.feed
    return feed


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ServiceDep = Annotated[ModelService, Depends(_service)]
CacheDep = Annotated[ClusterCache, Depends(_cache)]
FeedDep = Annotated[ChangeFeed, Depends(_feed)]
SettingsDep = Annotated[Settings, Depends(_settings)]

_bearer = HTTPBearer(auto_error=False, description="Set FOVEA_API_API_TOKEN to require it")


async def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse a mutating request without the configured bearer token (when one is set)."""
    if settings.api_token is None:
        return
    expected = settings.api_token.get_secret_value().encode()
    given = (credentials.credentials if credentials else "").encode()
    if not hmac.compare_digest(expected, given):
        raise Unauthorized()


def include_guarded(app: FastAPI, router: APIRouter, guarded: bool) -> None:
    """Add `router` to `app`; `guarded` (a token is configured): its routes require it."""
    if not guarded:
        app.include_router(router)
        return
    app.include_router(
        router,
        dependencies=[Depends(require_token)],
        responses={401: {"model": ErrorBody, "description": "Bearer token missing or wrong"}},
    )
