"""The local cluster's own tests always run against the local cluster.

Even with $FOVEA_TEST_KUBECONFIG pointing elsewhere, `kubeconfig` (and so
`namespace`) here means the session's `local_cluster`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fovea.localcluster.cluster import LocalCluster
from fovea.localcluster.rest import Rest


@pytest.fixture(scope="session")
def kubeconfig(local_cluster: LocalCluster) -> str:
    return str(local_cluster.kubeconfig)


@pytest.fixture
def rest(kubeconfig: str) -> Iterator[Rest]:
    """Plain-JSON access to the local cluster (the node agent's own client)."""
    client = Rest(Path(kubeconfig), pool_size=4)
    yield client
    client.close()
