"""Every install path passes a server-side dry run against a real API server.

The API server checks what `kubectl kustomize` cannot: every object against
its schema (the ModelCatalog and ModelSelections against the CRDs, with their
CEL rules), RBAC objects, PodDisruptionBudgets, Deployments. The CRDs are
applied first, as the installation docs say.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kustomize_testing import INSTALL_NAMESPACE, MANIFESTS, OVERLAYS, kubectl

pytestmark = pytest.mark.integration

INSTALLS = [f"overlays/{name}" for name in OVERLAYS] + ["samples", "gitops/example-site"]


@pytest.fixture(scope="module")
def install_namespace(kubeconfig: str, crds: None) -> Iterator[str]:
    """fovea-system must exist: a dry run creates no namespace for the objects inside it."""
    created = kubectl(["get", "namespace", INSTALL_NAMESPACE], kubeconfig, check=False)
    if created.returncode != 0:
        kubectl(["create", "namespace", INSTALL_NAMESPACE], kubeconfig)
    yield INSTALL_NAMESPACE
    if created.returncode != 0:
        kubectl(["delete", "namespace", INSTALL_NAMESPACE, "--wait=false"], kubeconfig)


@pytest.mark.parametrize("path", INSTALLS)
def test_install_passes_a_server_side_dry_run(
    path: str, kubeconfig: str, install_namespace: str
) -> None:
    result = kubectl(
        ["apply", "--server-side", "--dry-run=server", "-k", str(MANIFESTS / path)], kubeconfig
    )
    lines = result.stdout.strip().splitlines()
    assert lines and all(line.endswith("(server dry run)") for line in lines), result.stdout


def test_a_dry_run_refuses_an_invalid_selection(kubeconfig: str, install_namespace: str) -> None:
    """The dry run is a real check: the CRD schema rejects what it must."""
    bad = (
        "apiVersion: fovea.dev/v1alpha1\nkind: ModelSelection\n"
        f"metadata: {{name: object-detection, namespace: {INSTALL_NAMESPACE}}}\n"
        "spec: {task: object_detection, model: yolov8n, priority: 5000}\n"
    )
    result = kubectl(
        ["apply", "--server-side", "--dry-run=server", "-f", "-"], kubeconfig, bad, check=False
    )
    assert result.returncode != 0
    assert "priority" in result.stderr
