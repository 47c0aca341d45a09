"""Which Services the pass writes: one per selection, selecting the model that serves it (pure).

Each selection with a model pod to run owns a Service (`fovea.domain.endpoints`)
whose selector names the model whose Ready pods answer the task's requests.
The selector moves to a newly selected model only once one of its pods is
Ready, so a switch never leaves the Service without an answering pod when
the previous model still had one (make-before-break); the previous pod then
drains. A Service is written only when it differs from the stored one in
what the operator owns (its selector, port and labels): a steady cluster
writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fovea.domain import constants as c
from fovea.domain.endpoints import (
    build_service,
    predict_route,
    service_changes,
    service_name,
    service_url,
    serving_model,
)
from fovea.domain.resources import EndpointStatus

Key = tuple[str, str]  # (namespace, name)
Raw = Mapping[str, Any]


@dataclass(frozen=True)
class ServicePlan:
    writes: tuple[dict[str, Any], ...] = ()  # Service bodies to create or patch
    endpoints: Mapping[Key, EndpointStatus] = field(default_factory=dict)  # status.endpoint


def plan_services(
    wanted: Iterable[tuple[Key, str, str, str]],
    pods_by_owner: Mapping[str, Sequence[Raw]],
    services: Sequence[Raw],
) -> ServicePlan:
    """The Service bodies to write this pass, and each selection's `status.endpoint`.

    `wanted`: per selection that runs a model pod, ((namespace, name), uid,
    task, selected model); `pods_by_owner`: its model-server pods by the
    selection's uid; `services`: the managed Services that exist.
    """
    stored = {_key(obj): obj for obj in services}
    writes = []
    endpoints = {}
    for (ns, name), uid, task, model in wanted:
        existing = stored.get((ns, service_name(name)))
        current = _selected_model(existing)
        serving = serving_model(model, pods_by_owner.get(uid, ()), current) or model
        desired = build_service(name, ns, uid, task, serving)
        if service_changes(existing, desired):
            writes.append(desired)
        endpoints[(ns, name)] = EndpointStatus(
            service=service_name(name),
            url=service_url(name, ns),
            route=predict_route(task),
            serving_model=serving,
        )
    return ServicePlan(tuple(writes), endpoints)


def _selected_model(service: Raw | None) -> str | None:
    if service is None:
        return None
    selector = (service.get("spec") or {}).get("selector") or {}
    model = selector.get(c.LABEL_MODEL)
    return str(model) if model else None


def _key(obj: Raw) -> Key:
    meta = obj["metadata"]
    return (str(meta["namespace"]), str(meta["name"]))
