"""Fixtures every suite shares: one real Kubernetes API server for the whole run.

- `local_cluster`: ONE `fovea.localcluster` cluster per session, started on
  first use in a temporary state directory and stopped at the end. Under
  pytest-xdist (`make integration` runs on several workers) each worker is a
  session with a cluster of its own: tests on different workers share nothing.
- `kubeconfig`: the path (str) of the cluster the tests run against: the
  local cluster by default, or `$FOVEA_TEST_KUBECONFIG` (kind, a real
  cluster) when set. The session's `KUBECONFIG` points there too, so nothing
  in a test can reach another cluster by accident.
- `namespace`: a fresh namespace per test (named after it), deleted afterwards.

A test that uses any of them is marked `integration`, as is one that needs the
control plane's binaries (its pinned `kubectl`): only such a test finds or builds
them (`make unit` runs the others, with no control plane). A cluster that cannot
start fails those tests (the fixture raises); nothing is ever skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fovea.domain import constants as c
from fovea.kube import api_client, install_cluster_scoped
from kube_testing import Kube, eventually

if TYPE_CHECKING:
    from fovea.localcluster.cluster import LocalCluster

# Fixed, simulated GPU nodes: the same cluster shape on every machine.
TEST_GPUS = "2x24GiB,1x80GiB"
CLUSTER_FIXTURES = {"local_cluster", "kubeconfig", "namespace"}
NAMESPACE_LABEL = f"{c.GROUP}/test"
SERVICE_ACCOUNT_WAIT_S = 30.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a cluster `integration` (so `-m 'not integration'` works)."""
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


_binaries: list[Path] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    """An integration test runs `kubectl`: the one built with the control plane, same
    release. The binaries are found (or built) on the first such test, so a run of pure
    tests (`make unit`) never touches the control plane."""
    if _binaries or item.get_closest_marker("integration") is None:
        return
    from fovea.localcluster.binaries import ensure_binaries, put_kubectl_on_path

    _binaries.append(ensure_binaries())
    put_kubectl_on_path(_binaries[0])


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The session's local cluster (always this machine's, whatever the kubeconfig).

    Under pytest-xdist a session is one worker: each worker has a cluster of its own
    (its own state directory, ports, nodes and simulated GPUs), so tests on different
    workers share nothing. The workers start theirs one at a time (`_one_start_at_a_time`).
    """
    from fovea.localcluster.cluster import LocalCluster

    # A short name: the container node's kubelet makes unix sockets below it (at most 107
    # bytes), and a worker's base temp is longer by `popen-gwN/` (bind: invalid argument).
    state_dir = tmp_path_factory.mktemp("lc")
    # Its messages go to <state_dir>/cluster.log, not into some test's captured output.
    cluster = LocalCluster(state_dir, gpus=TEST_GPUS, log=lambda message: None)
    try:
        with _one_start_at_a_time(tmp_path_factory):
            cluster.start()
    except Exception as exc:
        pytest.fail(f"the local cluster could not start: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@contextlib.contextmanager
def _one_start_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hold the run's start lock (xdist workers share their base temp's parent).

    A cluster picks five free loopback ports, closes them, then its components bind
    them: two workers starting at once could pick the same one. One start at a time
    (each returns once every component listens) rules that out, and the starts'
    CPU does not delay each other on a small machine.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    lock = tmp_path_factory.getbasetemp().parent / "local-cluster-start.lock"
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest) -> Iterator[str]:
    """Path of the kubeconfig of the cluster under test."""
    external = os.environ.get(c.ENV_TEST_KUBECONFIG)
    if external:
        path = str(Path(external).expanduser().resolve())
        if not Path(path).is_file():
            pytest.fail(f"${c.ENV_TEST_KUBECONFIG}={external} is not a file", pytrace=False)
    else:
        cluster: LocalCluster = request.getfixturevalue("local_cluster")
        path = str(cluster.kubeconfig)
    previous = os.environ.get(c.ENV_KUBECONFIG)
    os.environ[c.ENV_KUBECONFIG] = path
    yield path
    if previous is None:
        os.environ.pop(c.ENV_KUBECONFIG, None)
    else:
        os.environ[c.ENV_KUBECONFIG] = previous


@pytest.fixture
def namespace(kubeconfig: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new namespace for this test, ready for pods (its default service account exists)."""
    from fovea.localcluster.rest import ApiError, Rest

    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base or 'test'}-{uuid.uuid4().hex[:6]}"
    rest = Rest(Path(kubeconfig), pool_size=2)
    body = {"metadata": {"name": name, "labels": {NAMESPACE_LABEL: "true"}}}
    rest.request("POST", "/api/v1/namespaces", body={"kind": "Namespace", **body})

    def service_account() -> bool:
        try:
            rest.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
        except ApiError as exc:
            if exc.status != 404:
                raise
            return False
        return True

    eventually(
        service_account, SERVICE_ACCOUNT_WAIT_S, 0.05, what=f"namespace {name}'s service account"
    )
    yield name
    try:
        rest.request("DELETE", f"/api/v1/namespaces/{name}")
    except ApiError as exc:
        if exc.status != 404:
            raise
    finally:
        rest.close()


# --- fovea resources and the real operator ------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def crds(kubeconfig: str) -> None:
    """The generated CRDs (established) and the model pods' ClusterRole, applied once."""
    install_cluster_scoped(kubeconfig)


@pytest.fixture
def kube(kubeconfig: str, namespace: str, crds: None) -> Kube:
    return Kube(api_client(kubeconfig), kubeconfig, namespace)


@pytest.fixture
def operator_factory(
    kubeconfig: str, namespace: str, crds: None, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start operators watching only the test's namespace (its own Lease there)."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "FOVEA_OPERATOR_LEASE_NAMESPACE": namespace,
            "FOVEA_OPERATOR_LEASE_SECONDS": "6",
            "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
        }
        log = open(tmp_path / f"operator-{len(started)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "fovea.cli", "operator", "-n", namespace],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def operator(operator_factory: Callable[[], subprocess.Popen[bytes]], kube: Kube) -> None:
    """One operator for the test, running once it holds its Lease."""
    proc = operator_factory()
    held = eventually(lambda: _lease_holder(kube) or proc.poll() is not None, timeout=60)
    assert held and proc.poll() is None, "the operator did not start"


def _lease_holder(kube: Kube) -> str | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        lease = client.CoordinationV1Api(kube.api).read_namespaced_lease(
            "fovea-models-operator", kube.namespace
        )
    except ApiException:
        return None
    return lease.spec.holder_identity if lease.spec else None
