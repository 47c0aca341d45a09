"""The operator makes exactly one kind of RoleBinding (the shipped admission policy).

RBAC lets an identity with `create rolebindings` bind anyone to any role
whose rights it holds itself. The shipped policy (manifests/rbac/
operator-admission.yaml) leaves the operator one binding: the namespace's
model-pod account to the ClusterRole fovea-model-pod. Asked as the operator
(impersonated) against the real API server with the shipped RBAC installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_testing import Kube, eventually
from kustomize_testing import MANIFESTS, delete_cluster_rbac, kubectl, render, write_wrapper

pytestmark = pytest.mark.integration

OPERATOR = "fovea-models-operator"
ROLE_ONLY = "the operator binds only the ClusterRole fovea-model-pod"
ACCOUNT_ONLY = "binds only the namespace's ServiceAccount fovea-model-pod"


def binding(name: str, role_kind: str, role: str, account: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def create_as_operator(kube: Kube, body: dict[str, Any]) -> tuple[bool, str]:
    user = f"system:serviceaccount:{kube.namespace}:{OPERATOR}"
    result = kubectl(
        ["create", "-f", "-", f"--as={user}"], kube.kubeconfig, yaml.safe_dump(body), check=False
    )
    return result.returncode == 0, result.stderr


@pytest.fixture
def shipped_rbac(kube: Kube, tmp_path: Path) -> Iterator[None]:
    wrapper = write_wrapper(tmp_path / "rbac", MANIFESTS / "rbac", kube.namespace)
    objects = render(wrapper)
    try:
        kubectl(["apply", "--server-side", "-k", str(wrapper)], kube.kubeconfig)
        # The API server loads a new policy a moment after it is stored.
        probe = binding("probe", "ClusterRole", "fovea-model-pod", "someone", kube.namespace)
        assert eventually(lambda: ACCOUNT_ONLY in create_as_operator(kube, probe)[1], timeout=30)
        yield
    finally:
        delete_cluster_rbac(objects, kube.kubeconfig)


def test_the_operator_binds_only_model_pods_to_their_cluster_role(
    kube: Kube, shipped_rbac: None
) -> None:
    ns = kube.namespace
    # A Role with rights the operator holds: RBAC alone would let it bind anyone to it.
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "readers", "namespace": ns},
        "rules": [
            {"apiGroups": ["fovea.dev"], "resources": ["modelselections"], "verbs": ["list"]}
        ],
    }
    kubectl(["create", "-f", "-"], kube.kubeconfig, yaml.safe_dump(role))
    ok, why = create_as_operator(
        kube, binding("fovea-model-pod-x", "ClusterRole", "fovea-model-pod", "fovea-model-pod", ns)
    )
    assert ok, why
    refused = {
        # Its own rights, handed to another account: RBAC alone would allow this one.
        "its own role": binding("a", "ClusterRole", f"{OPERATOR}-{ns}", "default", ns),
        "cluster-admin": binding("b", "ClusterRole", "cluster-admin", "fovea-model-pod", ns),
        "another account": binding("c", "ClusterRole", "fovea-model-pod", "default", ns),
        "a Role": binding("d", "Role", "readers", "fovea-model-pod", ns),
    }
    for what, body in refused.items():
        ok, why = create_as_operator(kube, body)
        assert not ok and "forbidden" in why.lower(), (what, why)
    _, why = create_as_operator(kube, refused["its own role"])
    assert ROLE_ONLY in why
    _, why = create_as_operator(kube, refused["another account"])
    assert ACCOUNT_ONLY in why
