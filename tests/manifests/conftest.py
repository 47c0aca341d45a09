"""Fixtures of the manifest tests that need a cluster (the local one by default)."""

from __future__ import annotations

import pytest

from kustomize_testing import MANIFESTS, kubectl


@pytest.fixture(scope="session")
def crds(kubeconfig: str) -> None:
    """The CRDs, applied through their kustomization (as users do) and established."""
    kubectl(["apply", "--server-side", "-k", str(MANIFESTS / "crd")], kubeconfig)
    kubectl(
        [
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/modelcatalogs.fovea.dev",
            "crd/modelselections.fovea.dev",
        ],
        kubeconfig,
        timeout=90,
    )
