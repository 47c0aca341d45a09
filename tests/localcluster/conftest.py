"""The local cluster's own tests always run against the local cluster.

Even with $FOVEA_TEST_KUBECONFIG pointing elsewhere, `kubeconfig` (and so
`namespace`) here means the session's `local_cluster`.
"""

from __future__ import annotations

import pytest

from fovea.localcluster.cluster import LocalCluster


@pytest.fixture(scope="session")
def kubeconfig(local_cluster: LocalCluster) -> str:
    return str(local_cluster.kubeconfig)
