"""The app factory: settings, cache and writer in; a FastAPI app out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from fovea.api import (
    exception_handlers,
    routes_board,
    routes_inference,
    routes_inspect,
    routes_leases,
    routes_models,
    routes_ops,
)
from fovea.api.cache import ClusterCache
from fovea.api.clients import ClientSource
from fovea.api.confirm import Confirmer
from fovea.api.deps import include_guarded
from fovea.api.feed import ChangeFeed
from fovea.api.gateway import Gateway
from fovea.api.inference_metrics import InferenceMetrics
from fovea.api.metrics import LatencyMiddleware, SnapshotCollector, request_histogram
from fovea.api.schemas import ErrorBody
from fovea.api.selection_metrics import SelectionCollector
from fovea.api.service import ModelService
from fovea.api.settings import Settings, get_settings
from fovea.api.stale_reads import StaleHeaderMiddleware
from fovea.api.writes import SelectionWriter

DESCRIPTION = """\
The annotation tool's Model Management API, served from Kubernetes resources:
ModelCatalog (the models.yaml) and ModelSelection (one per task). Reads come
from a watch-fed cache; a select patches the task's ModelSelection and the
operator loads the model. Errors are always `{"error": "<message>"}`.
"""


def create_app(
    settings: Settings | None = None,
    cache: ClusterCache | None = None,
    writer: SelectionWriter | None = None,
) -> FastAPI:
    """Build the app. A cache passed in is started if needed but stopped by its owner."""
    settings = settings or get_settings()
    owns_cache = cache is None
    confirmer: Confirmer | None = None
    if cache is None or writer is None:
        clients = ClientSource(settings.kubeconfig, settings.client_qps, settings.client_burst)
        if cache is None:
            cache = ClusterCache(
                clients,
                settings.namespace,
                settings.catalog,
                settings.watch_timeout_seconds,
                settings.reconnect_max_backoff_seconds,
                settings.cluster_wide,
                settings.default_quota(),
                settings.warm_switches,
            )
        if writer is None:
            writer = SelectionWriter(
                clients,
                settings.namespace,
                settings.catalog,
                settings.write_retries,
                settings.request_timeout_seconds,
            )
        confirmer = Confirmer(
            clients, settings.namespace, settings.catalog, settings.request_timeout_seconds
        )
    feed = ChangeFeed(cache)
    live_cache = cache

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        feed.attach(asyncio.get_running_loop())
        live_cache.start()
        try:
            yield
        finally:
            await app.state.gateway.aclose()
            feed.detach()
            if owns_cache:
                await asyncio.to_thread(live_cache.stop)

    app = FastAPI(
        title="fovea-models: Model Management API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: live_cache.snapshot))
    registry.register(SelectionCollector(lambda: live_cache.snapshot))  # alerts' gauges
    app.state.settings = settings
    app.state.cache = cache
    app.state.feed = feed
    app.state.registry = registry
    app.state.service = ModelService(
        cache, writer, feed, settings.max_wait_seconds, confirmer, settings.stale_read_seconds
    )
    app.state.gateway = Gateway(
        cache, feed, app.state.service, settings, InferenceMetrics(registry)
    )

    exception_handlers.install(app)
    # Writes, the inference route, and the routes that reach further into the cluster
    # (events, pod logs, Leases) require the bearer token when one is configured.
    guarded = settings.api_token is not None
    # The polled reads and the inference route first: routing tries routes in order.
    routes_models.add_polled_reads(app, app.state.service)
    include_guarded(app, routes_inference.router, guarded)  # docs/inference.md
    app.include_router(routes_models.read_router)
    app.include_router(routes_ops.router)
    include_guarded(app, routes_inspect.router, guarded)  # tasks, describe, logs
    routes_board.install(app)  # the GPU board at /
    include_guarded(app, routes_leases.router, guarded)  # session leases
    include_guarded(app, routes_models.write_router, guarded)
    app.include_router(routes_inference.read_router)  # GET /api/models/inference

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(StaleHeaderMiddleware, snapshot=lambda: live_cache.snapshot)
    app.add_middleware(LatencyMiddleware, histogram=request_histogram(registry))
    _document_400_not_422(app)
    return app


def _document_400_not_422(app: FastAPI) -> None:
    """Bad parameters answer 400 `{"error": ...}` (exception_handlers), never FastAPI's 422."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault(
                        "400",
                        {
                            "description": "Bad request: a missing or malformed parameter",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ErrorBody"}
                                }
                            },
                        },
                    )
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = (
            ErrorBody.model_json_schema()
        )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
