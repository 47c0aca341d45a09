"""Rendering the kustomize tree with the real `kubectl kustomize`, and installing it
into a test's namespace.

A test installs a kustomization into its own namespace through a small wrapper
kustomization: every namespaced object and every ServiceAccount subject moves
to the test's namespace, and the cluster-scoped RBAC and admission objects
get the namespace as a suffix, so no two installs (or a real one in
fovea-system) share a ClusterRole, a ClusterRoleBinding or an admission
policy; an admission policy's binding is confined to the namespace.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
INSTALL_NAMESPACE = "fovea-system"
# Every directory that `kubectl apply -k` is documented to take.
OVERLAYS = ("local", "kind", "gpu", "hami")
CLUSTER_RBAC_KINDS = (
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)
POLICY_BINDING = "ValidatingAdmissionPolicyBinding"


def kubectl(
    args: Sequence[str],
    kubeconfig: str | None = None,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl; a failure with check=True raises with kubectl's own stderr."""
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    result = subprocess.run(
        ["kubectl", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result


def render_text(directory: Path) -> str:
    """`kubectl kustomize DIR` (offline: no cluster, no plugins)."""
    return kubectl(["kustomize", str(directory)]).stdout


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects a kustomization renders to."""
    return [doc for doc in yaml.safe_load_all(render_text(directory)) if doc]


def find(objects: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`); fails the test when there is none or several."""
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"].get("name"))]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    """The first (only) container of a Deployment."""
    first: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return first


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """A Deployment container's env, by name (value, or the valueFrom mapping)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


def rbac_rules(objects: Sequence[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, rule) for every rule of every Role and ClusterRole."""
    for obj in objects:
        if obj["kind"] in ("Role", "ClusterRole"):
            for rule in obj.get("rules") or []:
                yield f"{obj['kind']}/{obj['metadata']['name']}", rule


def write_wrapper(
    directory: Path, resource: Path, namespace: str, patches: Sequence[dict[str, Any]] = ()
) -> Path:
    """A kustomization in `directory` that installs `resource` into `namespace`."""
    directory.mkdir(parents=True, exist_ok=True)
    transformers = {
        "namespace.yaml": {
            "apiVersion": "builtin",
            "kind": "NamespaceTransformer",
            "metadata": {"name": "test-namespace", "namespace": namespace},
            # ClusterRoleBinding subjects too, whatever namespace they named.
            "setRoleBindingSubjects": "allServiceAccounts",
        },
        "suffix.yaml": {
            "apiVersion": "builtin",
            "kind": "PrefixSuffixTransformer",
            "metadata": {"name": "test-suffix"},
            "suffix": f"-{namespace}",
            "fieldSpecs": [
                *({"kind": kind, "path": "metadata/name"} for kind in CLUSTER_RBAC_KINDS),
                {"kind": POLICY_BINDING, "path": "spec/policyName"},
            ],
        },
    }
    # An admission policy binding applies to the install's namespace only.
    confine = {
        "target": {"kind": POLICY_BINDING},
        "patch": yaml.safe_dump(
            [
                {
                    "op": "add",
                    "path": "/spec/matchResources",
                    "value": {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": namespace}
                        }
                    },
                }
            ]
        ),
    }
    for name, body in transformers.items():
        (directory / name).write_text(yaml.safe_dump(body))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # Kustomize takes no absolute path: the resource relative to the wrapper.
        "resources": [os.path.relpath(resource, directory)],
        "transformers": list(transformers),
        "patches": [confine, *patches],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def without_namespace_object(text: str) -> str:
    """The rendered text minus Namespace objects (a test's namespace already exists)."""
    docs = [d for d in yaml.safe_load_all(text) if d and d["kind"] != "Namespace"]
    return yaml.safe_dump_all(docs)


def delete_cluster_rbac(objects: Sequence[dict[str, Any]], kubeconfig: str) -> None:
    """Delete the cluster-scoped RBAC objects of an install (namespaced ones go with it)."""
    names = [
        f"{o['kind'].lower()}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] in CLUSTER_RBAC_KINDS
    ]
    if names:
        kubectl(["delete", "--ignore-not-found", "--wait=false", *names], kubeconfig)
