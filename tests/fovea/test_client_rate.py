"""A client's requests: held to QPS and burst by a token bucket, and named by verb and resource."""

from __future__ import annotations

import pytest

from fovea.client_rate import TokenBucket, describe


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_goes_out_at_once_then_requests_wait_one_qps_interval_each() -> None:
    clock = Clock()
    bucket = TokenBucket(qps=10, burst=3, clock=clock)
    assert [bucket.wait_for() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait_for() == pytest.approx(0.1)
    assert bucket.wait_for() == pytest.approx(0.2)  # reserved behind the previous one
    clock.now += 10.0  # idle: the bucket refills to its burst, not beyond
    assert [bucket.wait_for() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait_for() == pytest.approx(0.1)
    assert bucket.waited_s == pytest.approx(0.4)


def test_no_qps_means_no_limit() -> None:
    bucket = TokenBucket(qps=0, burst=1, clock=Clock())
    assert all(bucket.wait_for() == 0.0 for _ in range(1000))


def test_a_limit_needs_a_burst_of_one_at_least() -> None:
    with pytest.raises(ValueError, match="burst of at least 1"):
        TokenBucket(qps=5, burst=0)


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "https://h/api/v1/namespaces/a/pods?labelSelector=x&watch=True", ("watch", "pods")),
        ("GET", "https://h/api/v1/namespaces/a/pods?labelSelector=x", ("list", "pods")),
        ("GET", "https://h/api/v1/pods?fieldSelector=spec.nodeName%21%3D", ("list", "pods")),
        ("GET", "https://h/api/v1/namespaces/a/events/e.1", ("get", "events")),
        ("POST", "https://h/api/v1/namespaces/a/pods", ("create", "pods")),
        ("DELETE", "https://h/api/v1/namespaces/a/pods/p", ("delete", "pods")),
        (
            "PATCH",
            "https://h/apis/fovea.dev/v1/namespaces/a/modelselections/s/status",
            ("patch", "modelselections/status"),
        ),
        ("GET", "https://h/apis/resource.k8s.io/v1/resourceslices", ("list", "resourceslices")),
        ("GET", "https://h/api/v1/namespaces/a", ("get", "namespaces")),
        (
            "PUT",
            "https://h/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
            ("update", "leases"),
        ),
    ],
)
def test_each_request_is_named_as_the_audit_log_names_it(
    method: str, url: str, expected: tuple[str, str]
) -> None:
    assert describe(method, url) == expected
