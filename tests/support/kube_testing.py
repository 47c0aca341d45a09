"""Helpers for tests against a real API server: one namespace, plain dicts."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from waiting import eventually as eventually  # the suite's one wait (tests/support/waiting.py)


class Kube:
    """The test's namespace on the real cluster, through the official client."""

    def __init__(self, api: client.ApiClient, kubeconfig: str, namespace: str) -> None:
        self.api, self.kubeconfig, self.namespace = api, kubeconfig, namespace
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def kubectl(
        self, args: list[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        return subprocess.run(
            ["kubectl", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    # --- fovea resources ---------------------------------------------------

    def apply_catalog(self, spec: dict[str, Any], name: str = "default") -> None:
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.CATALOG_KIND,
            "metadata": {"name": name},
            "spec": spec,
        }
        try:
            self.custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, c.CATALOG_PLURAL, body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Replace the spec, not merge it: a removed option must really go. A JSON
            # patch replaces it whole without a read first, so the operator's status
            # writes between a read and a PUT cannot make it conflict (they did: 409).
            self.custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.CATALOG_PLURAL,
                name,
                [{"op": "replace", "path": "/spec", "value": spec}],
                _content_type="application/json-patch+json",
            )

    def select(self, task: str, model: str | None, **spec: Any) -> None:
        """Create or update the task's ModelSelection (spec keys in snake_case)."""
        camel = {_camel(k): v for k, v in spec.items()}
        name = selection_name(task)
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.SELECTION_KIND,
            "metadata": {"name": name},
            "spec": {"task": task, "model": model, **camel},
        }
        try:
            self.custom.create_namespaced_custom_object(
                c.GROUP, c.VERSION, self.namespace, c.SELECTION_PLURAL, body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.custom.patch_namespaced_custom_object(
                c.GROUP,
                c.VERSION,
                self.namespace,
                c.SELECTION_PLURAL,
                name,
                {"spec": {"model": model, **camel}},
            )

    def delete_selection(self, task: str) -> None:
        self.custom.delete_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.SELECTION_PLURAL, selection_name(task)
        )

    def selection(self, task: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.SELECTION_PLURAL, selection_name(task)
        )
        return obj

    def selections(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.SELECTION_PLURAL
        )["items"]
        return items

    def status(self, task: str) -> dict[str, Any]:
        try:
            return dict(self.selection(task).get("status") or {})
        except ApiException as exc:
            if exc.status == 404:
                return {}
            raise

    def phases(self) -> dict[str, str]:
        return {
            s["spec"]["task"]: (s.get("status") or {}).get("phase", "") for s in self.selections()
        }

    def patch_status(self, task: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            c.GROUP,
            c.VERSION,
            self.namespace,
            c.SELECTION_PLURAL,
            selection_name(task),
            {"status": status},
        )

    # --- pods and events ---------------------------------------------------

    def model_pods(self) -> list[dict[str, Any]]:
        items = self.api.sanitize_for_serialization(
            self.core.list_namespaced_pod(
                self.namespace, label_selector=f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}"
            ).items
        )
        return sorted(
            (p for p in items if not p["metadata"].get("deletionTimestamp")),
            key=lambda p: p["metadata"]["name"],
        )

    def other_model_pods(self) -> list[str]:
        """Model pods of other namespaces (an earlier test's, terminating ones too)."""
        pods = self.core.list_pod_for_all_namespaces(
            label_selector=f"{c.LABEL_COMPONENT}={c.COMPONENT_MODEL_POD}"
        ).items
        return sorted(
            f"{p.metadata.namespace}/{p.metadata.name}"
            for p in pods
            if p.metadata.namespace != self.namespace
        )

    def pod(self, name: str) -> dict[str, Any] | None:
        try:
            pod: dict[str, Any] = self.api.sanitize_for_serialization(
                self.core.read_namespaced_pod(name, self.namespace)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return pod

    @staticmethod
    def planned_node(pod: dict[str, Any]) -> str:
        return str(pod["metadata"]["annotations"][c.ANNOTATION_PLANNED_NODE])

    def events(self, task: str) -> list[dict[str, Any]]:
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={selection_name(task)}"
        ).items
        return [{"reason": e.reason, "message": e.message, "type": e.type} for e in events]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def holds_gpu(pod: dict[str, Any]) -> bool:
    """A GPU pod in either kind of sharing: one `nvidia.com/gpu` (device plugin), or its
    GPU's ResourceClaim (dra mode, which the operator picks on the local cluster)."""
    limits = pod["spec"]["containers"][0]["resources"].get("limits") or {}
    if str(limits.get(c.RESOURCE_GPU)) == "1":
        return True
    claims = pod["spec"].get("resourceClaims") or []
    return bool(claims) and c.RESOURCE_GPU not in limits


def tiny_option(vram_gb: float, **extra: Any) -> dict[str, Any]:
    """A catalog option declaring `vram_gb` whose real model is a tiny MLP a CPU loads at once
    (built from its architecture, random weights: nothing is downloaded)."""
    return {
        "modelId": "mlp-tiny",
        "framework": "pytorch",
        "vramGb": vram_gb,
        "architecture": "mlp-tiny",
        "allowRandomWeights": True,
        **extra,
    }


def mlp_option(outputs: int, vram_gb: float = 1.0, **extra: Any) -> dict[str, Any]:
    """A catalog option whose model is an MLP of 64 inputs and `outputs` outputs (random
    weights, built on the CPU at once): its answers' width says which option answered."""
    return {
        "modelId": f"mlp-{outputs}",
        "framework": "pytorch",
        "vramGb": vram_gb,
        "architecture": f"mlp:64,{outputs}",
        "allowRandomWeights": True,
        **extra,
    }


def tiny_catalog(tasks: dict[str, dict[str, dict[str, Any]]], **inference: Any) -> dict[str, Any]:
    """A catalog spec: task -> option name -> option, threshold 0.8, eager loading."""
    return {
        "tasks": {t: {"options": opts} for t, opts in tasks.items()},
        "inference": {"offloadThreshold": 0.8, "warmupOnStartup": True, **inference},
    }
