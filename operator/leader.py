"""Leadership through a coordination.k8s.io Lease: two replicas never both plan.

kopf's own peering pauses handlers, but the planning pass writes many objects
at once, so it is guarded by a Lease with optimistic concurrency instead.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from fovea.version import LEASE_ANNOTATION, VERSION

log = logging.getLogger(__name__)


class Lease:
    def __init__(
        self, api: client.ApiClient, name: str, namespace: str, identity: str, duration_s: float
    ) -> None:
        self._api = client.CoordinationV1Api(api)
        self.name, self.namespace, self.identity = name, namespace, identity
        self.duration_s = duration_s
        self._held_until: datetime | None = None

    def held(self, now: datetime) -> bool:
        """Whether this replica holds the Lease now (as of its last renewal)."""
        return self._held_until is not None and now < self._held_until

    def try_acquire(self, now: datetime) -> bool:
        """Acquire or renew the Lease; False when another live holder has it."""
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = (
            renewed is None
            or renewed + timedelta(seconds=spec.lease_duration_seconds or self.duration_s) < now
        )
        if holder not in (None, self.identity) and not expired:
            self._held_until = None
            return False
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            log.info("taking the Lease %s/%s from %s", self.namespace, self.name, holder)
        spec.holder_identity = self.identity
        spec.renew_time = now
        # The holder says which release it runs (kubectl get lease -o yaml).
        meta = lease.metadata = lease.metadata or client.V1ObjectMeta()
        meta.annotations = {**(meta.annotations or {}), LEASE_ANNOTATION: VERSION}
        spec.lease_duration_seconds = int(self.duration_s)
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:  # someone else renewed first
                self._held_until = None
                return False
            raise
        self._held_until = now + timedelta(seconds=self.duration_s * 2 / 3)
        return True

    def _create(self, now: datetime) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name, namespace=self.namespace, annotations={LEASE_ANNOTATION: VERSION}
            ),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                acquire_time=now,
                renew_time=now,
                lease_duration_seconds=int(self.duration_s),
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._held_until = now + timedelta(seconds=self.duration_s * 2 / 3)
        return True

    def release(self) -> None:
        """Give the Lease up on shutdown so a peer takes over at once."""
        if self._held_until is None:
            return
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
            spec = lease.spec
            if spec is not None and spec.holder_identity == self.identity:
                spec.holder_identity = None
                spec.renew_time = None
                self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.warning("could not release the Lease: %s", exc.reason)
        self._held_until = None


def utcnow() -> datetime:
    return datetime.now(UTC)
