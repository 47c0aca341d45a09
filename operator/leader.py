"""Leadership through a coordination.k8s.io Lease: two replicas never both plan.

kopf's own peering pauses handlers, but the planning pass writes many objects
at once, so it is guarded by a Lease with optimistic concurrency instead.

A hot standby: every replica keeps its watch-fed cache warm, and the one that
holds the Lease plans. The leader renews every third of the Lease's duration
and stops planning two thirds of a duration after its last renewal; a standby
reads the Lease ten times per duration and takes it once the record it
observed has not changed for a whole duration, timed by its own clock (as
client-go's leader election does, so clocks of different nodes need not agree).
A leader that exits cleanly releases the Lease, so a standby takes it at once.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from fovea.version import LEASE_ANNOTATION, VERSION

log = logging.getLogger(__name__)
# A release on exit waits this long for the API server at most (per request).
RELEASE_TIMEOUT_S = 2.0


@dataclass
class Observed:
    """A standby's view of another replica's Lease record: when it last saw it change."""

    record: tuple[str | None, str | None] | None = None  # (holder, renew time) as read
    since: float = 0.0  # monotonic time at which that record was first seen

    def expired(
        self, holder: str | None, renewed: str | None, duration_s: float, now: float
    ) -> bool:
        """Whether the holder has let the Lease lapse: no holder, or the same record
        (no renewal) seen for a whole duration on this replica's clock."""
        if holder is None:
            return True
        if (holder, renewed) != self.record:
            self.record, self.since = (holder, renewed), now
            return False
        return now - self.since >= duration_s


class Lease:
    def __init__(
        self, api: client.ApiClient, name: str, namespace: str, identity: str, duration_s: float
    ) -> None:
        self._api = client.CoordinationV1Api(api)
        self.name, self.namespace, self.identity = name, namespace, identity
        self.duration_s = duration_s  # every replica times the Lease by its own setting
        self._held_until: datetime | None = None
        self._observed = Observed()

    def held(self, now: datetime) -> bool:
        """Whether this replica holds the Lease now (as of its last renewal)."""
        return self._held_until is not None and now < self._held_until

    def next_try_in(self, now: datetime) -> float:
        """Seconds until the next renewal (leader) or look at the Lease (standby)."""
        return self.duration_s / (3 if self.held(now) else 10)

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
        stamp = renewed.isoformat() if renewed is not None else None
        expired = self._observed.expired(holder, stamp, self.duration_s, time.monotonic())
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
        spec.lease_duration_seconds = math.ceil(self.duration_s)
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
                lease_duration_seconds=math.ceil(self.duration_s),
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
            timeout = RELEASE_TIMEOUT_S
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout
            )
            spec = lease.spec
            if spec is not None and spec.holder_identity == self.identity:
                spec.holder_identity = None
                spec.renew_time = None
                self._api.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=timeout
                )
        except (ApiException, HTTPError, OSError) as exc:
            # An API server already gone (the whole stack stopping) must not hold the exit:
            # raised, kopf retried this cleanup after 60 s. The Lease then lapses on its own.
            log.warning("could not release the Lease: %s", getattr(exc, "reason", exc))
        self._held_until = None


def utcnow() -> datetime:
    return datetime.now(UTC)
