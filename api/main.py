"""`fovea-models api`: serve the /api/models REST API with uvicorn."""

from __future__ import annotations

import argparse
import logging

from fovea.api.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags override the FOVEA_API_* environment."""
    parser.add_argument("--port", type=int, help="listen port (default 3001)")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--namespace", help="namespace of the catalog and selections")
    parser.add_argument("--catalog", help="name of the ModelCatalog (default 'default')")
    parser.add_argument("--kubeconfig", help="kubeconfig path (default $KUBECONFIG, in-cluster)")
    parser.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        help="origin allowed by CORS (repeatable)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level")


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings with the given flags applied."""
    overrides = {
        key: value
        for key in ("port", "host", "namespace", "catalog", "kubeconfig", "cors_origins")
        if (value := getattr(args, key, None)) is not None
    }
    return Settings(**overrides)


def run(args: argparse.Namespace) -> int:
    """Serve until stopped; 1 when no cluster configuration is usable."""
    from fovea.api.app import create_app
    from fovea.api.server import serve
    from fovea.kube import ClusterUnreachable

    settings = settings_from(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except ClusterUnreachable as exc:
        print(f"fovea-models api: {exc}")
        return 1
    serve(app, settings.host, settings.port, args.log_level)
    return 0
