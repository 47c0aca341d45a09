"""The operator's thin I/O adapter: read a World, apply Actions.

Reads are lists of raw JSON (no model deserialisation: it is the hot path);
every write is idempotent (create-or-409, delete-or-404, merge patches).

Every write stands alone: one the API server refuses (a namespace whose
ResourceQuota allows no pods, a namespace being deleted) is counted, kept for
the next snapshot (the planner writes the server's message into the owning
selection's `Scheduled` condition) and retried on its own backoff
(`fovea.operator.workqueue`); the rest of the pass goes on. Nothing is
created in a namespace that is terminating.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Lock
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from fovea.domain import constants as c
from fovea.domain import dra, leases
from fovea.domain.quota import UNLIMITED, Quota, quota_from_annotations
from fovea.domain.resources import SelectionSpec
from fovea.operator import cache as k
from fovea.operator.cache import WorldCache
from fovea.operator.reconcile import Actions, Catalog, Event, Key, Selection, World
from fovea.operator.workqueue import RetryQueue
from fovea.watch import Fixed

log = logging.getLogger(__name__)

WRITERS = 8  # concurrent writes per pass (the client's connection pool matches)
WRITE_FAILURES = Counter(
    "fovea_operator_write_failures",
    "Writes the API server refused or that did not reach it, by namespace and kind of write",
    ["namespace", "write"],
)
QUOTA_GIB = Gauge(
    "fovea_namespace_gpu_memory_quota_gb",
    "A namespace's GPU-memory quota (GiB), for namespaces with one",
    ["namespace"],
)
QUOTA_USED_GIB = Gauge(
    "fovea_namespace_gpu_memory_admitted_gb",
    "GPU memory (GiB) the admitted selections of a namespace with a quota declare",
    ["namespace"],
)
QUOTA_REFUSED = Gauge(
    "fovea_namespace_quota_exceeded_selections",
    "Selections of a namespace that are Unschedulable for its GPU-memory quota",
    ["namespace"],
)
API_REQUESTS = Counter(
    "fovea_operator_api_requests",
    "Requests to the Kubernetes API server, by verb (get, list, watch, create, patch, ...) "
    "and resource",
    ["verb", "resource"],
)
# The kinds of write (the `write` label, and the first part of a retry key).
CREATE_POD, DELETE_POD, PATCH_STATUS, PATCH_CATALOG, CREATE_IDENTITY, POST_EVENT = (
    "create-pod",
    "delete-pod",
    "patch-status",
    "patch-catalog-status",
    "create-identity",
    "post-event",
)
CREATE_CLAIM, DELETE_CLAIM = ("create-claim", "delete-claim")
WRITE_SERVICE = "write-service"
RESOURCE_GROUP, RESOURCE_VERSION = dra.API_VERSION.split("/")
EVENT_COMPONENT = "fovea-models-operator"
EVENT_CONTROLLER = "fovea.dev/operator"
WriteKey = tuple[str, str, str]  # (kind of write, namespace, name)


@dataclass(frozen=True)
class WriteFailure:
    """One refused write: the API server's reason and message, as it said them."""

    write: str
    namespace: str
    name: str
    reason: str  # the Status reason (Forbidden, Invalid, ...), else the kind of error
    message: str
    selection: str | None = None  # the selection it was for, when there is one

    @property
    def key(self) -> WriteKey:
        return (self.write, self.namespace, self.name)


@dataclass
class Applied:
    """What one `Cluster.apply` did."""

    writes: int = 0  # writes that succeeded
    failed: list[WriteFailure] = field(default_factory=list)
    deferred: int = 0  # writes waiting for their backoff, or in a terminating namespace

    @property
    def changed(self) -> bool:
        """Whether another pass may have something new to do (a write, or a failure to report)."""
        return bool(self.writes or self.failed)


class Cluster:
    def __init__(
        self,
        api: client.ApiClient,
        namespaces: list[str],
        service_account: str,
        default_quota: Quota = UNLIMITED,
        cluster_role: str = "fovea-model-pod",
        resync_s: float = 300.0,
    ) -> None:
        self.api = api
        self.cache = WorldCache(Fixed(api), namespaces, resync_s=resync_s)
        self.cluster_role = cluster_role
        self.namespaces = namespaces  # empty: all namespaces
        self.service_account = service_account
        self.default_quota = default_quota
        self.retries = RetryQueue()
        self._core = client.CoreV1Api(api)
        self._rbac = client.RbacAuthorizationV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._identities: set[str] = set()
        self._terminating: frozenset[str] = frozenset()
        self._dra_reason: str | None = ""  # last logged reason auto mode skips dra ("": none yet)
        self._quota_problems: dict[str, str] = {}  # namespace -> its quota's problem, as logged
        self._failures: dict[WriteKey, WriteFailure] = {}
        self._lock = Lock()  # the writer threads record into _failures
        self._pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="apply")

    # --- reads -----------------------------------------------------------

    def start(self, on_change: Callable[[], None] = lambda: None) -> None:
        """Start the watches; `on_change` is called (from a watch thread) on each change."""
        self.cache.on_change = on_change
        self.cache.start()

    def stop(self) -> None:
        self.cache.stop()
        self._pool.shutdown(wait=False)

    def snapshot(self, now: datetime) -> World:
        """Everything the planner needs, from the watch-fed cache (NotSynced until it is)."""
        cache = self.cache
        catalogs = {
            (cat.namespace, cat.name): cat for cat in map(_catalog, cache.items(k.CATALOGS))
        }
        selections = [_selection(o) for o in cache.items(k.SELECTIONS)]
        namespaces = cache.items(k.NAMESPACES)
        self._terminating = frozenset(
            ns["metadata"]["name"] for ns in namespaces if _terminating(ns)
        )
        quotas = {
            ns["metadata"]["name"]: quota_from_annotations(
                ns["metadata"].get("annotations"), self.default_quota
            )
            for ns in namespaces
        }
        problems = {name: q.problem for name, q in quotas.items() if q.problem}
        if problems != self._quota_problems:  # said once per change, not on every pass
            self._quota_problems = problems
            for name, problem in sorted(problems.items()):
                log.warning("namespace %s: %s; the cluster default applies", name, problem)
        return World(
            catalogs,
            selections,
            cache.items(k.NODES),
            cache.items(k.PODS),
            now,
            quotas=quotas,
            write_failures=self.selection_failures(),
            node_pods=cache.items(k.NODE_PODS),
            session_leases=leases.live_selections(cache.items(k.LEASES), now.timestamp()),
            services=cache.items(k.SERVICES),
            **self._dra(),
        )

    def _dra(self) -> dict[str, Any]:
        """DRA's view (World fields): DeviceClass and GPU devices, and the managed claims.

        A cluster without the resource.k8s.io/v1 API (or an operator not allowed to read
        it) has none, and the auto sharing mode stays with the device plugin.
        """
        classes = self.cache.items(k.DEVICE_CLASSES)
        devices = dra.devices_from_slices(self.cache.items(k.SLICES))
        reason = dra.dra_unavailable_reason(classes, devices)
        if reason != self._dra_reason:
            self._dra_reason = reason
            log.info("DRA for GPUs: %s", "available" if reason is None else f"not used: {reason}")
        return {
            "dra_available": reason is None,
            "dra_devices": tuple(devices),
            "claims": self.cache.items(k.CLAIMS),
        }

    def selection_failures(self) -> dict[Key, tuple[str, str]]:
        """The refused pod creations still waiting for a retry: selection -> (reason, message)."""
        with self._lock:
            failures = list(self._failures.values())
        return {
            (f.namespace, f.selection): (f.reason, f.message)
            for f in sorted(failures, key=lambda f: f.key)
            if f.selection is not None
        }

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest refused write is due again (None: nothing waits)."""
        return self.retries.next_due_in(time.monotonic())

    # --- writes ----------------------------------------------------------

    def apply(self, actions: Actions, now: float | None = None) -> Applied:
        """Carry out the actions; each one is harmless to repeat, and stands alone.

        Groups run in order (deletions free GPU memory before anything new is
        created); within a group the calls run concurrently. A write that fails
        never raises: it is counted, remembered and retried after its backoff.
        `now` is monotonic seconds (the clock when None).
        """
        now = time.monotonic() if now is None else now
        _export_quotas(actions)
        done = Applied()
        seen: set[WriteKey] = set()
        open_ns = [ns for ns in sorted(actions.namespaces) if ns not in self._terminating]
        identities = [ns for ns in open_ns if ns not in self._identities]
        identity = self._ensure_model_pod_identity
        self._each(done, seen, now, CREATE_IDENTITY, identities, lambda ns: (ns, ns), identity)
        self._each(done, seen, now, DELETE_POD, actions.delete, lambda k: k, self._delete_pod)
        # dra mode: a pod's claim exists before the pod (the scheduler allocates it then).
        claims = [b for b in actions.create_claims if _namespace(b) not in self._terminating]
        self._each(done, seen, now, CREATE_CLAIM, claims, _pod_key, self._create_claim)
        creates = [p for p in actions.create if _namespace(p) not in self._terminating]
        done.deferred += len(actions.create) - len(creates)
        self._each(done, seen, now, CREATE_POD, creates, _pod_key, self._create_pod)
        # An Event tells a status change: it goes out only once that status is written.
        written: set[tuple[str, Key]] = set()

        def patch(kind: str, plural: str) -> Callable[[tuple[Key, dict[str, Any]]], None]:
            def write(item: tuple[Key, dict[str, Any]]) -> None:
                self._patch_status(item, plural)
                written.add((kind, item[0]))

            return write

        statuses = sorted(actions.status.items())
        write_selection = patch(c.SELECTION_KIND, c.SELECTION_PLURAL)
        self._each(done, seen, now, PATCH_STATUS, statuses, lambda i: i[0], write_selection)
        catalogs = sorted(actions.catalog_status.items())
        write_catalog = patch(c.CATALOG_KIND, c.CATALOG_PLURAL)
        self._each(done, seen, now, PATCH_CATALOG, catalogs, lambda i: i[0], write_catalog)
        events = [
            e
            for e in actions.events
            if e.namespace not in self._terminating and (e.kind, e.key) in written
        ]
        self._each(done, seen, now, POST_EVENT, events, _event_key, self._post_event)
        # A Service is needed once its model serves: after the statuses (at 10,000 selections
        # their creations take minutes; the statuses should not wait for them).
        services = [s for s in actions.services if _namespace(s) not in self._terminating]
        self._each(done, seen, now, WRITE_SERVICE, services, _pod_key, self._write_service)
        gone = actions.delete_claims
        self._each(done, seen, now, DELETE_CLAIM, gone, lambda k: k, self._delete_claim)
        # Objects the plan no longer writes start afresh if they come back.
        self.retries.retain(seen)
        with self._lock:
            self._failures = {k: f for k, f in self._failures.items() if k in seen}
        return done

    def _each(
        self,
        done: Applied,
        seen: set[WriteKey],
        now: float,
        write: str,
        items: Sequence[Any],
        key_of: Callable[[Any], Key],
        call: Callable[[Any], None],
    ) -> None:
        """Run one group of writes: those due now, concurrently, each failure on its own."""
        due = []
        for item in items:
            ns, name = key_of(item)
            key = (write, ns, name)
            seen.add(key)
            if self.retries.due(key, now):
                due.append((key, item))
            else:
                done.deferred += 1

        def one(entry: tuple[WriteKey, Any]) -> WriteFailure | None:
            key, item = entry
            try:
                call(item)
            except (ApiException, HTTPError, OSError) as exc:
                return _failure(key, item, exc)
            return None

        results = map(one, due) if len(due) <= 1 else self._pool.map(one, due)
        for (key, _), failure in zip(due, list(results), strict=True):
            if failure is None:
                done.writes += 1
                self.retries.forget(key)
                with self._lock:
                    self._failures.pop(key, None)
                continue
            wait = self.retries.failed(key, now)
            done.failed.append(failure)
            WRITE_FAILURES.labels(failure.namespace, write).inc()
            with self._lock:
                self._failures[key] = failure
            log.warning(
                "%s %s/%s refused (%s: %s); retrying it in %.1fs",
                write,
                failure.namespace,
                failure.name,
                failure.reason,
                failure.message,
                wait,
            )

    def _delete_pod(self, key: Key) -> None:
        ns, name = key
        log.info("deleting pod %s/%s", ns, name)
        with _tolerating(404):
            gone = self._core.delete_namespaced_pod(name, ns, _preload_content=False)
            self._wrote(k.PODS, gone, key)

    def _create_pod(self, pod: dict[str, Any]) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        log.info("creating pod %s/%s", ns, name)
        body: Any = pod  # the client takes plain dicts as bodies
        with _tolerating(409):
            self._wrote(k.PODS, self._core.create_namespaced_pod(ns, body, _preload_content=False))

    def _write_service(self, service: dict[str, Any]) -> None:
        """Create a selection's Service, or move the one there to the model that serves now."""
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
        selector = service["spec"]["selector"]
        log.info("service %s/%s selects model %s", ns, name, selector.get(c.LABEL_MODEL))
        body: Any = service
        try:
            created = self._core.create_namespaced_service(ns, body, _preload_content=False)
            self._wrote(k.SERVICES, created)
        except ApiException as exc:
            if exc.status != 409:
                raise
            patch: Any = {
                "metadata": {"labels": service["metadata"]["labels"]},
                "spec": {"selector": selector, "ports": service["spec"]["ports"]},
            }
            patched = self._core.patch_namespaced_service(name, ns, patch, _preload_content=False)
            self._wrote(k.SERVICES, patched)

    def _create_claim(self, claim: dict[str, Any]) -> None:
        ns, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
        log.info("creating ResourceClaim %s/%s", ns, name)
        with _tolerating(409):  # exists (or is still being deleted: the next pass retries)
            created = self._custom.create_namespaced_custom_object(
                RESOURCE_GROUP,
                RESOURCE_VERSION,
                ns,
                "resourceclaims",
                claim,
                _preload_content=False,
            )
            self._wrote(k.CLAIMS, created)

    def _delete_claim(self, key: Key) -> None:
        ns, name = key
        log.info("deleting ResourceClaim %s/%s", ns, name)
        with _tolerating(404):
            gone = self._custom.delete_namespaced_custom_object(
                RESOURCE_GROUP, RESOURCE_VERSION, ns, "resourceclaims", name, _preload_content=False
            )
            self._wrote(k.CLAIMS, gone, key)

    def _patch_status(self, item: tuple[Key, dict[str, Any]], plural: str) -> None:
        (ns, name), status = item
        with _tolerating(404):  # the object was deleted meanwhile
            patched = self._custom.patch_namespaced_custom_object_status(
                c.GROUP,
                c.VERSION,
                ns,
                plural,
                name,
                {"status": status},
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
            self._wrote(k.SELECTIONS if plural == c.SELECTION_PLURAL else k.CATALOGS, patched)

    def _wrote(self, kind: str, response: Any, deleted: Key | None = None) -> None:
        """Store what the API server answered to a write (write-through): the object, or, for
        a delete of `deleted` that removed it at once (a Status answer), its absence."""
        try:
            obj = json.loads(response.data)
        except (AttributeError, TypeError, ValueError):
            return
        if not isinstance(obj, dict):
            return
        if obj.get("kind") == "Status":
            if deleted is not None:
                self.cache.deleted(kind, *deleted)
            return
        self.cache.wrote(kind, obj)

    def _ensure_model_pod_identity(self, ns: str) -> None:
        """The model pods' ServiceAccount, bound to the shipped ClusterRole, in namespace `ns`.

        No Role is made: the binding names the one ClusterRole (manifests/rbac/model-pod.yaml),
        which the operator may `bind` by name and nothing else.
        """
        sa = self.service_account
        meta = {"name": sa, "namespace": ns, "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY}}
        account: Any = {"metadata": meta}
        with _tolerating(409):
            self._core.create_namespaced_service_account(ns, account)
        binding: Any = {
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": self.cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        }
        with _tolerating(409):
            self._rbac.create_namespaced_role_binding(ns, binding)
        self._identities.add(ns)

    def _post_event(self, event: Event) -> None:
        """Create the Event, or count a repeat of the same one (`kubectl describe`: "x3 over")."""
        now = datetime.now(UTC)
        body: Any = event_body(event, now)
        name = body["metadata"]["name"]
        try:
            self._core.create_namespaced_event(event.namespace, body)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
        response: Any = self._core.read_namespaced_event(
            name, event.namespace, _preload_content=False
        )
        existing = json.loads(response.data)
        repeat: Any = event_repeat(existing, now)
        self._core.patch_namespaced_event(name, event.namespace, repeat)


def count_request(verb: str, resource: str) -> None:
    """Count one request to the API server (`fovea.client_rate.instrument`'s `count`)."""
    API_REQUESTS.labels(verb, resource).inc()


def event_body(event: Event, now: datetime) -> dict[str, Any]:
    """A core/v1 Event with its times; the name is the same for the same event of one object."""
    digest = hashlib.sha256(
        json.dumps([event.kind, event.uid, event.type, event.reason, event.message]).encode()
    ).hexdigest()[:16]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": f"{event.name}.{digest}", "namespace": event.namespace},
        "involvedObject": {
            "apiVersion": c.API_VERSION,
            "kind": event.kind,
            "name": event.name,
            "namespace": event.namespace,
            "uid": event.uid,
        },
        "type": str(event.type),
        "reason": str(event.reason),
        "message": event.message,
        "action": "Plan",
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_CONTROLLER,
        "reportingInstance": EVENT_COMPONENT,
        "firstTimestamp": stamp,  # `kubectl describe`
        "lastTimestamp": stamp,  # `kubectl get events`
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "count": 1,
    }


def event_repeat(existing: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The patch that counts one more occurrence of an existing Event."""
    count = int(existing.get("count") or 1) + 1
    return {
        "count": count,
        "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "series": {"count": count, "lastObservedTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
    }


def _catalog(obj: Mapping[str, Any]) -> Catalog:
    meta = obj["metadata"]
    return Catalog(
        namespace=meta["namespace"],
        name=meta["name"],
        spec=obj.get("spec") or {},
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        status=obj.get("status") or {},
    )


def _selection(obj: Mapping[str, Any]) -> Selection:
    meta = obj["metadata"]
    spec: SelectionSpec | None
    error = None
    try:
        spec = SelectionSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        spec, error = None, str(exc.errors()[0].get("msg"))
    return Selection(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        spec=spec,
        status=obj.get("status") or {},
        spec_error=error,
    )


def _export_quotas(actions: Actions) -> None:
    for gauge in (QUOTA_GIB, QUOTA_USED_GIB, QUOTA_REFUSED):
        gauge.clear()
    for ns, use in sorted(actions.quota_use.items()):
        if use.quota.gpu_memory_gib is not None:
            QUOTA_GIB.labels(ns).set(use.quota.gpu_memory_gib)
        QUOTA_USED_GIB.labels(ns).set(use.used_gib)
        QUOTA_REFUSED.labels(ns).set(use.refused)


def _terminating(namespace: Mapping[str, Any]) -> bool:
    phase = (namespace.get("status") or {}).get("phase")
    return bool(namespace["metadata"].get("deletionTimestamp")) or phase == "Terminating"


def _namespace(pod: Mapping[str, Any]) -> str:
    return str(pod["metadata"]["namespace"])


def _pod_key(pod: Mapping[str, Any]) -> Key:
    return (pod["metadata"]["namespace"], pod["metadata"]["name"])


def _event_key(event: Event) -> Key:
    return (event.namespace, f"{event.name}/{event.reason}")


def _owner(pod: Mapping[str, Any]) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == c.SELECTION_KIND and ref.get("controller"):
            return str(ref["name"])
    return None


def _failure(key: WriteKey, item: Any, exc: BaseException) -> WriteFailure:
    """The API server's own reason and message (its Status body), else the error's kind."""
    write, ns, name = key
    reason, message = type(exc).__name__, str(exc)
    if isinstance(exc, ApiException):
        reason, message = exc.reason or f"HTTP{exc.status}", str(exc.reason)
        try:
            body = json.loads(exc.body or "")
        except (TypeError, ValueError):
            body = None
        if isinstance(body, dict):
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or message)
    selection = _owner(item) if write == CREATE_POD else None
    return WriteFailure(write, ns, name, reason, message, selection)


@contextmanager
def _tolerating(status: int) -> Iterator[None]:
    """Treat one HTTP status as success: the writes are idempotent."""
    try:
        yield
    except ApiException as exc:
        if exc.status != status:
            raise
