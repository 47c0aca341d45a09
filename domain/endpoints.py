"""A selection's stable address: its Service, and the endpoints behind it. Pure.

Each ModelSelection owns a Service (in its namespace, same lifetime) whose
selector picks the Ready model-server pods of ONE model: the model that
serves the task now. The operator moves the selector to a newly selected
model only once that model's pod is Ready (make-before-break), so the
Service's EndpointSlices, which the cluster's controller-manager keeps, always
hold pods that can answer. The API's inference route reads those
EndpointSlices from a watch (`fovea.api.routing`); in-cluster clients may call
the Service directly (`http://<service>.<namespace>.svc:8080/predict`).

Nothing here does I/O: names, the Service's spec, and the parsing of
EndpointSlices into `Endpoint`s.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fovea.domain import constants as c

SERVICE_PORT_NAME = "http"
SERVICE_PORT = c.MODEL_POD_PORT
LABEL_SERVICE_NAME = "kubernetes.io/service-name"  # set by the EndpointSlice controller
COMPONENT_ENDPOINT = "model-endpoint"  # the Services' (and their EndpointSlices') component
ENDPOINT_SELECTOR = f"{c.LABEL_COMPONENT}={COMPONENT_ENDPOINT}"
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_SERVICE_NAME = 63


def service_name(selection: str) -> str:
    """The Service of a selection: its own name when that is a valid Service name.

    Service names are DNS-1035 labels (a letter first, at most 63). A selection
    name that is not one (`3d-tracking`) gets a prefix and, when too long, a
    hash of the whole name in place of its end, so two selections never share one.
    """
    if _DNS_1035.match(selection) and len(selection) <= MAX_SERVICE_NAME:
        return selection
    cleaned = re.sub(r"[^a-z0-9-]", "-", selection.lower())
    name = f"m-{cleaned}".rstrip("-")
    if len(name) <= MAX_SERVICE_NAME and _DNS_1035.match(name):
        return name
    digest = hashlib.sha256(selection.encode()).hexdigest()[:10]
    return f"{name[: MAX_SERVICE_NAME - 11].rstrip('-')}-{digest}"


def service_url(selection: str, namespace: str) -> str:
    """The in-cluster address of a selection's model (its Service's DNS name)."""
    return f"http://{service_name(selection)}.{namespace}.svc:{SERVICE_PORT}"


def predict_route(task: str) -> str:
    """The API's inference route of a task."""
    return f"/api/models/predict/{task}"


def label_value(text: str) -> str:
    """A string made safe as a label value (<= 63 chars, alnum at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")
    return value or "none"


def build_service(
    selection: str, namespace: str, uid: str, task: str, serving_model: str
) -> dict[str, Any]:
    """The Service of one selection, selecting the Ready pods of `serving_model`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(selection),
            "namespace": namespace,
            "labels": {
                c.LABEL_MANAGED_BY: c.MANAGED_BY,
                c.LABEL_COMPONENT: COMPONENT_ENDPOINT,
                c.LABEL_SELECTION: label_value(selection),
                c.LABEL_TASK: label_value(task),
            },
            "ownerReferences": [
                {
                    "apiVersion": c.API_VERSION,
                    "kind": c.SELECTION_KIND,
                    "name": selection,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": serving_selector(selection, serving_model),
            "ports": [
                {
                    "name": SERVICE_PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": SERVICE_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
            # Requests in flight on a terminating pod finish there (it drains).
            "publishNotReadyAddresses": False,
        },
    }


def serving_selector(selection: str, model: str) -> dict[str, str]:
    """The pod selector of a selection's Service while `model` serves it."""
    return {
        c.LABEL_COMPONENT: c.COMPONENT_MODEL_POD,
        c.LABEL_SELECTION: label_value(selection),
        c.LABEL_MODEL: label_value(model),
    }


def service_changes(stored: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether the stored Service differs from the desired one in what the operator owns."""
    if stored is None:
        return True
    spec, want = stored.get("spec") or {}, desired["spec"]
    if spec.get("selector") != want["selector"]:
        return True
    ports = [
        (p.get("name"), p.get("port"), str(p.get("targetPort"))) for p in spec.get("ports", [])
    ]
    wanted = [(p["name"], p["port"], str(p["targetPort"])) for p in want["ports"]]
    if ports != wanted:
        return True
    labels = (stored.get("metadata") or {}).get("labels") or {}
    return any(labels.get(k) != v for k, v in desired["metadata"]["labels"].items())


def serving_model(
    wanted_model: str | None, pods: Iterable[Mapping[str, Any]], current: str | None
) -> str | None:
    """Which model the Service should select now (make-before-break).

    `pods` are the selection's model-server pods. The wanted model serves as
    soon as one of its pods is Ready; until then the model the Service selects
    now (`current`) keeps serving while one of its pods is Ready, so a switch
    drops nothing. With neither, the wanted model (its pods join when Ready).
    """
    ready_models = {
        (pod.get("metadata", {}).get("labels") or {}).get(c.LABEL_MODEL)
        for pod in pods
        if pod_ready(pod) and not pod.get("metadata", {}).get("deletionTimestamp")
    }
    if wanted_model is None:
        return current
    if label_value(wanted_model) in ready_models:
        return wanted_model
    if current is not None and label_value(current) in ready_models:
        return current
    return wanted_model


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Whether a pod's Ready condition is True (the kubelet's readiness probe passed)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


@dataclass(frozen=True)
class Endpoint:
    """One address of a Service, as its EndpointSlice says (discovery.k8s.io/v1)."""

    pod: str  # targetRef name ("" when the slice names none)
    address: str
    port: int
    ready: bool
    serving: bool
    terminating: bool

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


def slice_endpoints(obj: Mapping[str, Any]) -> tuple[str, tuple[Endpoint, ...]]:
    """(service name, endpoints) of one EndpointSlice (without an http port: none)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    service = str(labels.get(LABEL_SERVICE_NAME, ""))
    port = None
    for p in obj.get("ports") or []:
        if p.get("name") == SERVICE_PORT_NAME and p.get("port") is not None:
            port = int(p["port"])
    if port is None:
        return service, ()
    out = []
    for ep in obj.get("endpoints") or []:
        conditions = ep.get("conditions") or {}
        ready = conditions.get("ready") is not False  # unset means ready (the API's rule)
        serving = conditions.get("serving")
        serving = ready if serving is None else bool(serving)
        target = ep.get("targetRef") or {}
        for address in ep.get("addresses") or []:
            out.append(
                Endpoint(
                    pod=str(target.get("name") or ""),
                    address=str(address),
                    port=port,
                    ready=ready,
                    serving=serving,
                    terminating=bool(conditions.get("terminating")),
                )
            )
    return service, tuple(out)


def endpoints_by_service(slices: Iterable[Mapping[str, Any]]) -> dict[str, tuple[Endpoint, ...]]:
    """Every Service's endpoints, merged over its slices."""
    merged: dict[str, list[Endpoint]] = {}
    for obj in slices:
        service, endpoints = slice_endpoints(obj)
        if service:
            merged.setdefault(service, []).extend(endpoints)
    return {name: tuple(eps) for name, eps in merged.items()}
