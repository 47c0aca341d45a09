"""Refusals confirmed against the API server before they are given.

The API answers from a watch-fed cache (`cache.py`), which trails the API
server by the time an event takes to arrive: a catalog applied with
`kubectl` and selected through the API a moment later, or a selection made
with `kubectl` and used by a request at once, may not be in the cache yet.
A refusal that rests only on the cache's view ("ModelCatalog not found",
"Unknown task", "Model not found", "No model selected") would then be
false. Before such a refusal is given, the catalog and the task's selection
are read directly (one GET each); the answer rests on what the API server
holds. Refusals are rare, so the reads cost nothing on the common path.

Synchronous (the kubernetes client is); callers run it in a worker thread.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.api.clients import ClientSource
from fovea.api.state import Selection, parse_catalog, parse_selection
from fovea.domain import constants as c
from fovea.domain.conditions import Reason
from fovea.domain.messages import say
from fovea.domain.resources import CatalogSpec

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Fresh:
    """What the API server holds now: the catalog (or why not) and one selection."""

    catalog: CatalogSpec | None
    catalog_error: str | None
    selection: Selection | None


class Confirmer:
    """Reads the catalog and a selection of one namespace straight from the API server."""

    def __init__(
        self, clients: ClientSource, namespace: str, catalog: str, timeout_s: float = 5.0
    ) -> None:
        self.clients = clients
        self.namespace = namespace
        self.catalog = catalog
        self._timeout = (CONNECT_TIMEOUT_S, timeout_s)

    def read(self, selection: str | None) -> Fresh | None:
        """The catalog and selection `selection` (None: the catalog only) as stored now.

        None when the API server cannot be read: the cache's answer stands.
        """
        try:
            raw_catalog = self._get(c.CATALOG_PLURAL, self.catalog)
            raw_selection = self._get(c.SELECTION_PLURAL, selection) if selection else None
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.info("could not confirm a refusal against the API server: %s", exc)
            return None
        if raw_catalog is None:
            catalog: CatalogSpec | None = None
            error: str | None = say(
                Reason.CATALOG_NOT_FOUND, catalog=self.catalog, namespace=self.namespace
            )
        else:
            catalog, error = parse_catalog(raw_catalog)
        parsed = parse_selection(raw_selection) if raw_selection is not None else None
        return Fresh(catalog, error, parsed)

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        return read_object(self.clients, self.namespace, plural, name, self._timeout)


def read_object(
    clients: ClientSource, namespace: str, plural: str, name: str, timeout: tuple[float, float]
) -> dict[str, Any] | None:
    """One fovea.dev object as the API server stores it, or None when there is none (404)."""
    try:
        response: Any = client.CustomObjectsApi(clients.get()).get_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            namespace,
            plural,
            name,
            _preload_content=False,
            _request_timeout=timeout,
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    try:
        data: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return data
