"""Fixtures of the model pod's tests.

The fast tests need no cluster: models are tiny and built from configs with
random weights, on the CPU, with the model hub switched off. The integration
tests use the real API server (`kubeconfig`, `namespace` from
tests/conftest.py) and apply the CRDs generated from `fovea.domain`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from fovea.model_pod.adapters.base import ModelSpec
from fovea.model_pod.identity import Identity


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a model hub: this machine has none, and CI must not either."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("YOLO_OFFLINE", "1")


@pytest.fixture
def make_identity() -> Callable[..., Identity]:
    """An Identity for a model served on the CPU, reporting nowhere unless told."""

    def make(
        framework: str,
        model_id: str,
        architecture: str | None = None,
        allow_random_weights: bool = True,
        batch_size: int = 2,
        device: str = "cpu",
        simulated_gpu: bool = False,
        declared_vram_gb: float | None = None,
        selection: str | None = None,
        namespace: str | None = None,
    ) -> Identity:
        spec = ModelSpec(
            task="test_task",
            model_id=model_id,
            architecture=architecture,
            allow_random_weights=allow_random_weights,
            batch_size=batch_size,
            declared_vram_gb=declared_vram_gb,
        )
        return Identity(
            spec=spec,
            framework=framework,
            model="test-option",
            planned_device=device,
            simulated_gpu=simulated_gpu,
            selection=selection,
            namespace=namespace,
            pod_name="test-pod",
            port=8080,
        )

    return make


@pytest.fixture(scope="session")
def selection_crds(kubeconfig: str) -> None:
    """The CRDs generated from fovea.domain, applied and established."""
    from fovea.domain.crds import rendered_files

    env = {**os.environ, "KUBECONFIG": kubeconfig}
    manifest = "\n---\n".join(rendered_files().values())
    subprocess.run(
        ["kubectl", "apply", "--server-side", "--force-conflicts", "-f", "-"],
        input=manifest,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    subprocess.run(
        ["kubectl", "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
        env=env,
        check=True,
        capture_output=True,
        timeout=90,
    )
