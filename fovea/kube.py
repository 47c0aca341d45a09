"""The one Kubernetes client wrapper: how every process finds its cluster.

Order: an explicit kubeconfig path, then `$KUBECONFIG`, then the in-cluster
service account. The official `kubernetes` client is used everywhere.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException


class ClusterUnreachable(RuntimeError):
    """No usable cluster configuration, or the API server does not answer."""


def configure_kopf_login(kubeconfig: str | None = None) -> str | None:
    """Resolve which kubeconfig kopf should use (it reads `$KUBECONFIG`)."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        os.environ["KUBECONFIG"] = path
    return path


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """Return an ApiClient for the configured cluster, or raise ClusterUnreachable."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    cfg = client.Configuration()
    try:
        if path:
            config.load_kube_config(config_file=path, client_configuration=cfg)
        else:
            config.load_incluster_config(client_configuration=cfg)
    except (ConfigException, OSError) as exc:
        raise ClusterUnreachable(f"no usable cluster configuration: {exc}") from exc
    # Several threads share one client (the operator writes concurrently).
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, 16)
    return client.ApiClient(cfg)


CRD_DIR = Path(__file__).resolve().parent.parent / "manifests" / "crd"


def apply_crds(kubeconfig: str, timeout_s: float = 90.0) -> None:
    """Apply the generated CRDs with kubectl and wait until they are established.

    The files are named one by one: `manifests/crd` also holds a kustomization.
    Raises ClusterUnreachable with kubectl's own message when either step fails.
    """
    from fovea.domain.crds import CRDS

    env = {**os.environ, "KUBECONFIG": kubeconfig}
    files = [f"--filename={CRD_DIR / name}" for name in sorted(CRDS)]
    wait = ["wait", "--for=condition=Established", f"--timeout={int(timeout_s)}s"]
    for args in (["apply", "--server-side", *files], [*wait, *files]):
        result = subprocess.run(
            ["kubectl", *args], env=env, capture_output=True, text=True, timeout=timeout_s + 30
        )
        if result.returncode != 0:
            raise ClusterUnreachable(
                f"kubectl {args[0]} of the CRDs failed: {result.stderr.strip()}"
            )
