"""Helm in tests: the binary built once into the cache (scripts/build-helm.sh, like the
control plane's), the chart, and installs into a test's namespace.

A test installs the chart into its own namespace through a post-renderer (a Helm
plugin of type postrenderer/v1 in the test's HELM_PLUGINS) that passes the rendered
objects through the same wrapper kustomization as the kustomize installs
(kustomize_testing.write_wrapper): the cluster-scoped RBAC and admission objects get
the namespace as a suffix and the admission bindings apply to that namespace only,
so an install leaves every other test (and a real install) alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kustomize_testing import REPO, render_text, write_wrapper

CHART = REPO / "charts" / "fovea-models"
BASELINES = REPO / "tests" / "manifests" / "baseline"
BUILD = REPO / "scripts" / "build-helm.sh"
LOCAL_VALUES = CHART / "ci" / "local-values.yaml"
POST_RENDERER = "fovea-test-namespace"
# Test-only: the operator watches the test's namespace, not the whole cluster.
CONFINE_OPERATOR = {
    "target": {"kind": "Deployment", "name": "fovea-models-operator"},
    "patch": yaml.safe_dump(
        [
            {
                "op": "add",
                "path": "/spec/template/spec/containers/0/command/-",
                "value": "--namespace=$(POD_NAMESPACE)",
            }
        ]
    ),
}


@cache
def helm_binary() -> str:
    """The pinned helm, built from the Go module proxy on first use (minutes, once)."""
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, f"{BUILD} failed:\n{result.stderr[-3000:]}"
    binary = Path(lines[-1]) / "helm"
    assert os.access(binary, os.X_OK), f"{BUILD} printed {lines[-1]} without an executable helm"
    return str(binary)


def helm(
    args: Sequence[str],
    kubeconfig: str | None = None,
    *,
    home: Path | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run helm; its state (plugins, cache, config) under `home`, never the user's."""
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    if home is not None:
        env |= {
            "HELM_PLUGINS": str(home / "plugins"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
    result = subprocess.run(
        [helm_binary(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result


def template(*args: str, chart: Path = CHART, namespace: str = "fovea-system") -> str:
    """`helm template` of the chart (CRDs included) as the release fovea-models."""
    return helm(
        ["template", "fovea-models", str(chart), "-n", namespace, "--include-crds", *args]
    ).stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def install_post_renderer(home: Path, namespace: str) -> None:
    """The Helm plugin that moves an install into `namespace` as the kustomize tests do."""
    plugin = home / "plugins" / POST_RENDERER
    plugin.mkdir(parents=True, exist_ok=True)
    run = plugin / "run.sh"
    support = Path(__file__).resolve().parent
    run.write_text(
        f'#!/bin/sh\nPYTHONPATH="{support}" exec "{sys.executable}" "{__file__}" '
        f'"{namespace}" "{home}"\n'
    )
    run.chmod(0o755)
    (plugin / "plugin.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "name": POST_RENDERER,
                "version": "0.1.0",
                "type": "postrenderer/v1",
                "runtime": "subprocess",
                "runtimeConfig": {"platformCommand": [{"command": str(run)}]},
            }
        )
    )


def post_render(namespace: str, home: Path, text: str) -> str:
    """Helm's rendered objects through the test wrapper (kustomize_testing.write_wrapper)."""
    work = home / "post-render"
    (work / "input").mkdir(parents=True, exist_ok=True)
    (work / "input" / "objects.yaml").write_text(text)
    (work / "input" / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": ["objects.yaml"]})
    )
    wrapper = write_wrapper(work / "wrapper", work / "input", namespace, [CONFINE_OPERATOR])
    rendered = render_text(wrapper)
    # The test's namespace exists already (and is not the release's to delete).
    return yaml.safe_dump_all([d for d in objects(rendered) if d["kind"] != "Namespace"])


if __name__ == "__main__":  # the post-renderer plugin: stdin -> stdout
    sys.stdout.write(post_render(sys.argv[1], Path(sys.argv[2]), sys.stdin.read()))
