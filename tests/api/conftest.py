"""Fixtures of the API's integration tests: the API served on a real port, in-process.

The cluster itself (`kubeconfig`, `namespace`) comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from api_server import ApiServer
from fovea.api.settings import Settings


@pytest.fixture
def api_factory(kubeconfig: str, namespace: str, crds: None) -> Iterator[Callable[..., ApiServer]]:
    """Start APIs for the test's namespace (settings overridable); stopped afterwards."""
    servers: list[ApiServer] = []

    def start(**overrides: object) -> ApiServer:
        fields: dict[str, object] = {
            "kubeconfig": kubeconfig,
            "namespace": namespace,
            "reconnect_max_backoff_seconds": 0.5,
            **overrides,
        }
        settings = Settings(**fields)  # type: ignore[arg-type]
        server = ApiServer(settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api(api_factory: Callable[..., ApiServer]) -> ApiServer:
    """The API for the test's namespace, its cache synced."""
    server = api_factory()
    server.wait_ready()
    return server
