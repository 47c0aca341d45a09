"""The one Kubernetes client wrapper: how every process finds its cluster.

Order: an explicit kubeconfig path, then `$KUBECONFIG`, then the in-cluster
service account. The official `kubernetes` client is used everywhere.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from fovea.settings import child_environment, export_kubeconfig, get_settings


class ClusterUnreachable(RuntimeError):
    """No usable cluster configuration, or the API server does not answer."""


def kubeconfig_path(kubeconfig: str | None = None) -> str | None:
    """The kubeconfig to use: `kubeconfig`, else `$KUBECONFIG`; None means in-cluster."""
    return kubeconfig or get_settings().kubeconfig or None


def configure_kopf_login(kubeconfig: str | None = None) -> str | None:
    """Resolve which kubeconfig kopf should use (it reads `$KUBECONFIG`)."""
    path = kubeconfig_path(kubeconfig)
    if path:
        export_kubeconfig(path)
    return path


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """Return an ApiClient for the configured cluster, or raise ClusterUnreachable."""
    path = kubeconfig_path(kubeconfig)
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


MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
CRD_DIR = MANIFESTS / "crd"
# The ClusterRole the operator binds model pods to in each namespace (RoleBindings).
MODEL_POD_ROLE = MANIFESTS / "rbac" / "model-pod.yaml"


def install_cluster_scoped(kubeconfig: str, timeout_s: float = 90.0) -> None:
    """What every install needs before the operator runs, applied with kubectl.

    The generated CRDs (applied, then waited for until established) and the
    model pods' ClusterRole, which the operator only binds (it may not create
    roles). The CRD files are named one by one: `manifests/crd` also holds a
    kustomization. Raises ClusterUnreachable with kubectl's own message when a
    step fails.
    """
    import yaml

    from fovea.domain.crds import CRDS

    env = child_environment({"KUBECONFIG": kubeconfig})
    files = [f"--filename={CRD_DIR / name}" for name in sorted(CRDS)]
    role = [d for d in yaml.safe_load_all(MODEL_POD_ROLE.read_text()) if d["kind"] == "ClusterRole"]
    wait = ["wait", "--for=condition=Established", f"--timeout={int(timeout_s)}s"]
    steps: list[tuple[list[str], str | None]] = [
        (["apply", "--server-side", *files], None),
        ([*wait, *files], None),
        (["apply", "--server-side", "--filename=-"], yaml.safe_dump_all(role)),
    ]
    for args, stdin in steps:
        result = subprocess.run(
            ["kubectl", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s + 30,
        )
        if result.returncode != 0:
            raise ClusterUnreachable(
                f"kubectl {' '.join(args[:2])} failed: {result.stderr.strip()}"
            )
