"""The one Kubernetes client wrapper: how every process finds its cluster.

Order: an explicit kubeconfig path, then `$KUBECONFIG`, then the in-cluster
service account. The official `kubernetes` client is used everywhere.
"""

from __future__ import annotations

import os

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
