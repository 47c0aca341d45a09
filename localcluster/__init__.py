"""A real Kubernetes control plane on this machine, for development and tests.

`LocalCluster` (in `fovea.localcluster.cluster`) starts etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from the Go module proxy
(`gobuild/`), registers simulated (or real, via NVML) GPU nodes and a CPU
node, and runs the pods bound to them as local processes (`agent`). The CLI is
`fovea-models cluster up|down|status|kubeconfig|logs|build`; see
docs/local-cluster.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fovea.localcluster.cluster import LocalCluster

__all__ = ["LocalCluster"]


def __getattr__(name: str) -> Any:
    # Lazy: `fovea-models` imports this package for every command, and the
    # cluster pulls in the kubernetes client.
    if name == "LocalCluster":
        from fovea.localcluster.cluster import LocalCluster

        return LocalCluster
    raise AttributeError(name)
