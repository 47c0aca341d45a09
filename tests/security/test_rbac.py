"""Least privilege, proven by the API server: `kubectl auth can-i --as=<service account>`.

RBAC cannot say "its own selection": what a model pod may write within its
namespace is narrowed by the shipped admission policy (test_model_pod_admission.py),
and which bindings the operator may make by another (test_operator_admission.py).

The shipped RBAC (manifests/rbac) is installed for real into the test's
namespace (cluster-scoped objects get the namespace as a suffix), then each
identity is asked what it must be able to do and what it must not.
`elsewhere` is another namespace: the operator works cluster-wide, the API
writes only in its own (it reads selections everywhere), the model pods only in their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from kustomize_testing import (
    MANIFESTS,
    delete_cluster_rbac,
    kubectl,
    render,
    render_text,
    write_wrapper,
)

pytestmark = pytest.mark.integration

OPERATOR, API, MODEL_POD = "fovea-models-operator", "fovea-models-api", "fovea-model-pod"
ELSEWHERE = "default"  # another namespace; nothing of ours is bound there
LEASE = "leases.coordination.k8s.io"
SELECTIONS, CATALOGS = "modelselections.fovea.dev", "modelcatalogs.fovea.dev"
CRDS = "customresourcedefinitions.apiextensions.k8s.io"
CLUSTER_ROLES = "clusterroles.rbac.authorization.k8s.io"


class Ask(NamedTuple):
    verb: str
    resource: str  # RESOURCE[/NAME]; `--subresource` below
    where: str | None  # "own", "elsewhere", "all" (all namespaces) or None (cluster-scoped)
    subresource: str = ""


def own(verb: str, resource: str, subresource: str = "") -> Ask:
    return Ask(verb, resource, "own", subresource)


def elsewhere(verb: str, resource: str, subresource: str = "") -> Ask:
    return Ask(verb, resource, "elsewhere", subresource)


def everywhere(verb: str, resource: str) -> Ask:
    return Ask(verb, resource, "all")


def cluster(verb: str, resource: str) -> Ask:
    return Ask(verb, resource, None)


MUST: dict[str, list[Ask]] = {
    OPERATOR: [
        # kopf: CRD discovery and namespace observation; Events.
        cluster("list", CRDS),
        cluster("watch", CRDS),
        cluster("list", "namespaces"),
        cluster("watch", "namespaces"),
        cluster("get", "namespaces"),  # quota annotations, terminating (docs/tenants.md)
        elsewhere("create", "events"),
        elsewhere("get", "events"),  # a repeated Event is counted on the existing one
        elsewhere("patch", "events"),
        # The planner's reads, cluster-wide.
        everywhere("list", SELECTIONS),
        everywhere("watch", SELECTIONS),
        everywhere("list", CATALOGS),
        everywhere("watch", CATALOGS),
        cluster("list", "nodes"),
        cluster("watch", "nodes"),
        everywhere("list", "pods"),
        everywhere("watch", "pods"),
        # Its writes, in any namespace with selections.
        elsewhere("patch", SELECTIONS, "status"),
        elsewhere("patch", CATALOGS, "status"),
        elsewhere("create", "pods"),
        elsewhere("delete", "pods"),
        # The model pods' identity: an account, bound to the one shipped ClusterRole.
        elsewhere("create", "serviceaccounts"),
        elsewhere("create", "rolebindings.rbac.authorization.k8s.io"),
        cluster("bind", f"{CLUSTER_ROLES}/fovea-model-pod"),
        # Its Lease, in its own namespace.
        own("create", LEASE),
        everywhere("list", LEASE),  # session leases (fovea.domain.leases)
        everywhere("watch", LEASE),  # the planner's cache watches what it lists
        everywhere("list", "services"),
        everywhere("watch", "services"),
        # dra mode (fovea.domain.dra): devices read, one claim per selection and GPU.
        cluster("list", "deviceclasses.resource.k8s.io"),
        cluster("watch", "deviceclasses.resource.k8s.io"),
        cluster("list", "resourceslices.resource.k8s.io"),
        cluster("watch", "resourceslices.resource.k8s.io"),
        everywhere("list", "resourceclaims.resource.k8s.io"),
        everywhere("watch", "resourceclaims.resource.k8s.io"),
        elsewhere("create", "resourceclaims.resource.k8s.io"),
        elsewhere("delete", "resourceclaims.resource.k8s.io"),
        own("get", f"{LEASE}/fovea-models-operator"),
        own("update", f"{LEASE}/fovea-models-operator"),
    ],
    API: [
        own("get", SELECTIONS),
        own("list", SELECTIONS),
        own("watch", SELECTIONS),
        own("create", SELECTIONS),
        own("patch", SELECTIONS),
        own("list", CATALOGS),
        own("watch", CATALOGS),
        own("list", "pods"),
        own("watch", "pods"),
        cluster("list", "nodes"),
        cluster("watch", "nodes"),
        cluster("list", "namespaces"),  # its own Namespace's quota annotations
        cluster("watch", "namespaces"),
        # What the operator plans with (cluster-wide mode, fovea.api.planning): every
        # namespace's selections and catalogs, the pods on the nodes, the session leases.
        everywhere("list", SELECTIONS),
        everywhere("watch", SELECTIONS),
        everywhere("list", CATALOGS),
        everywhere("watch", CATALOGS),
        everywhere("list", "pods"),
        everywhere("watch", "pods"),
        everywhere("list", LEASE),
        everywhere("watch", LEASE),
        # Session leases: created or renewed, and ended (routes_leases.py).
        own("create", LEASE),
        own("patch", LEASE),
        own("delete", LEASE),
    ],
    MODEL_POD: [
        own("patch", SELECTIONS, "status"),
        # A warm pod follows its selection's spec.model (model_pod/warm.py: a watch).
        own("list", SELECTIONS),
        own("watch", SELECTIONS),
    ],
}

MUST_NOT: dict[str, list[Ask]] = {
    OPERATOR: [
        # Specs are the users': read only.
        elsewhere("patch", SELECTIONS),
        elsewhere("update", SELECTIONS),
        elsewhere("create", SELECTIONS),
        elsewhere("delete", SELECTIONS),
        elsewhere("patch", CATALOGS),
        elsewhere("update", SELECTIONS, "status"),
        # Pods are created and deleted, never changed; no exec, no logs.
        elsewhere("update", "pods"),
        elsewhere("patch", "pods"),
        elsewhere("create", "pods", "exec"),
        elsewhere("get", "pods", "log"),
        # No Secret, anywhere.
        elsewhere("get", "secrets"),
        own("get", "secrets"),
        everywhere("get", "secrets"),
        everywhere("list", "secrets"),
        elsewhere("list", "secrets"),
        elsewhere("watch", "secrets"),
        elsewhere("update", "secrets"),
        elsewhere("create", "secrets"),
        # No Role of its own making; bindings are created, never changed or deleted.
        elsewhere("create", "roles.rbac.authorization.k8s.io"),
        own("create", "roles.rbac.authorization.k8s.io"),
        elsewhere("update", "roles.rbac.authorization.k8s.io"),
        elsewhere("update", "rolebindings.rbac.authorization.k8s.io"),
        elsewhere("delete", "rolebindings.rbac.authorization.k8s.io"),
        elsewhere("create", "serviceaccounts", "token"),
        cluster("patch", "namespaces"),  # a tenant's quota is the platform team's
        cluster("create", "clusterroles.rbac.authorization.k8s.io"),
        cluster("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        elsewhere("escalate", "roles.rbac.authorization.k8s.io"),
        elsewhere("bind", "roles.rbac.authorization.k8s.io"),
        cluster("bind", f"{CLUSTER_ROLES}/cluster-admin"),
        cluster("bind", f"{CLUSTER_ROLES}/admin"),
        cluster("bind", f"{CLUSTER_ROLES}/fovea-models-operator"),
        cluster("escalate", CLUSTER_ROLES),
        cluster("impersonate", "serviceaccounts"),
        # DRA devices are the driver's: read only; a claim's status is the scheduler's.
        cluster("create", "resourceslices.resource.k8s.io"),
        cluster("create", "deviceclasses.resource.k8s.io"),
        elsewhere("patch", "resourceclaims.resource.k8s.io", "status"),
        elsewhere("update", "resourceclaims.resource.k8s.io"),  # a claim is never changed
        # Nodes are read only; no other workloads.
        cluster("patch", "nodes"),
        cluster("delete", "nodes"),
        elsewhere("create", "deployments.apps"),
        elsewhere("delete", "events"),
        cluster("create", CRDS),
        # Only its own Lease, only in its own namespace.
        own("get", f"{LEASE}/someone-elses"),
        own("update", f"{LEASE}/someone-elses"),
        own("delete", f"{LEASE}/fovea-models-operator"),
        elsewhere("create", LEASE),
    ],
    API: [
        # It never deletes, and never touches pods beyond reading them.
        own("delete", SELECTIONS),
        own("delete", "pods"),
        own("create", "pods"),
        own("patch", "pods"),
        own("create", "pods", "exec"),
        own("delete", CATALOGS),
        own("create", "pods", "eviction"),
        own("create", "rolebindings.rbac.authorization.k8s.io"),
        own("create", CATALOGS),
        own("patch", CATALOGS),
        # The status is the operator's and the model pod's.
        own("patch", SELECTIONS, "status"),
        own("update", SELECTIONS, "status"),
        own("update", SELECTIONS),
        # Writes in its own namespace only (it reads selections cluster-wide).
        elsewhere("patch", SELECTIONS),
        elsewhere("create", SELECTIONS),
        elsewhere("create", LEASE),
        elsewhere("delete", "pods"),
        everywhere("patch", SELECTIONS),
        # Nothing else.
        own("get", "secrets"),
        own("list", "configmaps"),
        cluster("patch", "nodes"),
        own("create", "events"),
    ],
    MODEL_POD: [
        own("get", "pods"),
        own("list", "pods"),
        own("create", "pods"),
        own("delete", "pods"),
        own("get", SELECTIONS),
        elsewhere("list", SELECTIONS),
        own("patch", SELECTIONS),
        own("update", SELECTIONS, "status"),
        own("get", SELECTIONS, "status"),
        own("list", CATALOGS),
        elsewhere("patch", SELECTIONS, "status"),
        own("get", "secrets"),
        own("get", "configmaps"),
        own("create", "events"),
        cluster("list", "nodes"),
        own("get", LEASE),
        own("create", "rolebindings.rbac.authorization.k8s.io"),
        cluster("bind", f"{CLUSTER_ROLES}/fovea-model-pod"),
    ],
}


@pytest.fixture(scope="module")
def rbac_namespace(
    kubeconfig: str, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A namespace with the shipped RBAC applied for real (and removed afterwards)."""
    import uuid

    namespace = f"rbac-{uuid.uuid4().hex[:6]}"
    kubectl(["create", "namespace", namespace], kubeconfig)
    wrapper = write_wrapper(tmp_path_factory.mktemp("rbac"), MANIFESTS / "rbac", namespace)
    objects = render(wrapper)
    try:
        kubectl(["apply", "--server-side", "-f", "-"], kubeconfig, render_text(wrapper))
        yield namespace
    finally:
        delete_cluster_rbac(objects, kubeconfig)
        kubectl(["delete", "namespace", namespace, "--wait=false"], kubeconfig)


def can_i(kubeconfig: str, namespace: str, account: str, ask: Ask) -> bool:
    args = [
        "auth",
        "can-i",
        ask.verb,
        ask.resource,
        f"--as=system:serviceaccount:{namespace}:{account}",
    ]
    if ask.subresource:
        args.append(f"--subresource={ask.subresource}")
    if ask.where == "own":
        args.append(f"--namespace={namespace}")
    elif ask.where == "elsewhere":
        args.append(f"--namespace={ELSEWHERE}")
    elif ask.where == "all":
        args.append("--all-namespaces")
    result = kubectl(args, kubeconfig, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {result.stderr}"
    return answer == "yes"


def answers(kubeconfig: str, namespace: str, account: str, asks: list[Ask]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda a: can_i(kubeconfig, namespace, account, a), asks))


def wrong_answers(kubeconfig: str, namespace: str, account: str, expected: bool) -> list[str]:
    asks = (MUST if expected else MUST_NOT)[account]
    got = answers(kubeconfig, namespace, account, asks)
    word = "cannot" if expected else "can"
    return [f"{account} {word} {a}" for a, yes in zip(asks, got, strict=True) if yes != expected]


@pytest.mark.parametrize("account", [OPERATOR, API, MODEL_POD])
def test_each_identity_can_do_what_it_must(
    kubeconfig: str, rbac_namespace: str, account: str
) -> None:
    assert wrong_answers(kubeconfig, rbac_namespace, account, expected=True) == []


@pytest.mark.parametrize("account", [OPERATOR, API, MODEL_POD])
def test_each_identity_cannot_do_what_it_must_not(
    kubeconfig: str, rbac_namespace: str, account: str
) -> None:
    assert wrong_answers(kubeconfig, rbac_namespace, account, expected=False) == []


def test_an_unbound_account_can_do_none_of_it(kubeconfig: str, rbac_namespace: str) -> None:
    """The answers above come from the shipped bindings, not from some broader default."""
    asks = [*MUST[OPERATOR], *MUST[API], *MUST[MODEL_POD]]
    got = answers(kubeconfig, rbac_namespace, "default", asks)
    assert [a for a, yes in zip(asks, got, strict=True) if yes] == []


def test_the_rendered_install_is_what_was_checked(tmp_path: Path) -> None:
    """The wrapper only moves namespaces and renames cluster objects: same rules."""
    shipped = {
        (o["kind"], o["metadata"]["name"]): o.get("rules")
        for o in render(MANIFESTS / "rbac")
        if o["kind"] in ("Role", "ClusterRole")
    }
    wrapped = {
        (o["kind"], o["metadata"]["name"].removesuffix("-elsewhere")): o.get("rules")
        for o in render(write_wrapper(tmp_path, MANIFESTS / "rbac", "elsewhere"))
        if o["kind"] in ("Role", "ClusterRole")
    }
    assert wrapped == shipped
