"""The operator's cache against the real API server: a missed event is repaired by the resync,
and one switch costs a counted, small number of requests (no list, no read)."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import urllib3

from fovea.domain import constants as c
from fovea.operator import cache as k
from fovea.operator.cache import WorldCache
from fovea.watch import Fixed
from kube_testing import Kube, eventually
from kube_testing import tiny_catalog as catalog
from kube_testing import tiny_option as option

pytestmark = pytest.mark.integration


class Deaf(WorldCache):
    """A cache that misses every watch event of one object while `deaf` is set."""

    def __init__(self, *args: Any, name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = name
        self.deaf = threading.Event()
        self.missed: list[str] = []

    def apply(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        if self.deaf.is_set() and obj["metadata"]["name"] == self.name:
            self.missed.append(event_type)
            return
        super().apply(kind, event_type, obj)


def test_a_cache_that_misses_an_event_converges_at_the_next_resync(kube: Kube) -> None:
    kube.select("det", "one")
    name = kube.selection("det")["metadata"]["name"]
    cache = Deaf(Fixed(kube.api), [kube.namespace], resync_s=3.0, name=name)

    def model() -> str | None:
        found = [s for s in cache.items(k.SELECTIONS) if s["metadata"]["name"] == name]
        return found[0]["spec"]["model"] if found else None

    cache.start()
    try:
        assert cache.wait_synced(30), cache.unsynced()
        assert model() == "one"
        relists = cache.relists
        cache.deaf.set()
        kube.select("det", "two")
        eventually(lambda: cache.missed, what="the watch event the cache misses")
        assert model() == "one"  # missed: the cache still has the old spec
        cache.deaf.clear()
        assert eventually(lambda: model() == "two" or None, timeout=30), cache.missed
        assert cache.relists > relists  # repaired by the relist, not by a watch event
    finally:
        cache.stop()


class StatusHistory:
    """A selection's status changes as a watch sees them: each write that changed it is one."""

    def __init__(self, kube: Kube, task: str) -> None:
        from kubernetes import watch

        self.changes: list[dict[str, Any]] = []
        self._watch = watch.Watch()
        self.watching = threading.Event()
        self.stopped = threading.Event()
        self.broken: Exception | None = None  # the watch ended before stop(): changes missed
        name = kube.selection(task)["metadata"]["name"]
        last: dict[str, Any] | None = None

        def run() -> None:
            nonlocal last
            stream = self._watch.stream(
                kube.custom.list_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                kube.namespace,
                c.SELECTION_PLURAL,
                field_selector=f"metadata.name={name}",
                timeout_seconds=300,
            )
            try:
                for event in stream:
                    status = dict(event["object"].get("status") or {})
                    if last is not None:
                        self.changes.append({k: v for k, v in status.items() if last.get(k) != v})
                    last = status
                    self.watching.set()
            except urllib3.exceptions.HTTPError as exc:
                # After stop() (the cluster stopping under a watch left open): nothing missed.
                if not self.stopped.is_set():
                    self.broken = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert self.watching.wait(30), "the selection's watch did not start"

    def operator_writes(self) -> int:
        """Status changes with an operator field (the model pod writes only status.runtime)."""
        assert self.broken is None, f"the watch ended early, changes were missed: {self.broken}"
        return sum(1 for diff in self.changes if set(diff) - {"runtime"})

    def stop(self) -> None:
        self.stopped.set()
        self._watch.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def requests(port: int) -> Counter[tuple[str, str]]:
    """fovea_operator_api_requests_total by (verb, resource), from the operator's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = r'fovea_operator_api_requests_total\{resource="([^"]+)",verb="([^"]+)"\} (\S+)'
    return Counter({(verb, res): int(float(n)) for res, verb, n in re.findall(pattern, text)})


def test_one_switch_costs_a_pod_a_delete_its_status_patches_and_events_and_no_read(
    kube: Kube,
    operator_factory: Callable[[], subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("FOVEA_OPERATOR_METRICS_PORT", str(port))
    monkeypatch.setenv("FOVEA_OPERATOR_CACHE_RESYNC_SECONDS", "3600")  # no relist meanwhile
    kube.apply_catalog(catalog({"det": {"one": option(1.0), "two": option(1.0)}}))
    kube.select("det", "one")
    proc = operator_factory()
    first = eventually(lambda: kube.status("det").get("phase") == "Ready" or None, timeout=120)
    assert first, (proc.poll(), kube.status("det"))
    old = kube.status("det")["pod"]
    before = requests(port)
    history = StatusHistory(kube, "det")
    kube.select("det", "two")

    def switched() -> bool:
        status = kube.status("det")
        return (
            status.get("phase") == "Ready"
            and status.get("pod") != old
            and kube.pod(old) is None
            and status.get("observedGeneration") == 2
        )

    assert eventually(switched, timeout=120), kube.status("det")

    def counted() -> Counter[tuple[str, str]] | None:
        calls = requests(port) - before
        patches = calls[("patch", "modelselections/status")]
        return calls if patches == history.operator_writes() else None

    # Every status patch changed the status (none repeated what the cache already had).
    calls = eventually(counted, timeout=30)
    history.stop()
    assert calls is not None, (requests(port) - before, history.changes)
    reads = {key for key in calls if key[0] in ("get", "list", "watch")}
    writes = {key: n for key, n in calls.items() if key not in reads}
    # Everything is read from the cache: no list and no read of an object, only the Lease's
    # renewals, the read of an Event counted once more, and a watch the server ended anew.
    assert {key for key in reads if key[0] != "watch"} <= {("get", "leases"), ("get", "events")}
    assert writes[("create", "pods")] == 1, calls
    assert writes[("delete", "pods")] == 1, calls
    assert writes.get(("create", "resourceclaims"), 0) <= 1, calls
    patches = writes[("patch", "modelselections/status")]
    events = writes.get(("create", "events"), 0) + writes.get(("patch", "events"), 0)
    assert patches >= 1 and events <= patches, calls  # an Event only with the change it tells
    expected = {
        ("update", "leases"),
        ("create", "pods"),
        ("delete", "pods"),
        ("create", "resourceclaims"),
        ("delete", "resourceclaims"),
        ("patch", "modelselections/status"),
        ("create", "events"),
        ("patch", "events"),
        ("create", "services"),
        ("patch", "services"),
    }
    assert set(writes) <= expected, calls
