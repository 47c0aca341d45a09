"""The node agent: the local cluster's kubelet, for all of its nodes at once.

It registers the Node objects, keeps their Leases fresh (so the node-lifecycle
controller never marks them unreachable), and watches the pods bound to each
of its nodes (field selector `spec.nodeName`). Each pod gets a `PodRunner`
thread, which runs the pod's process and reports its status. Pods bound to
other nodes are not its business. A watch, not polling, so a pod starts
within milliseconds of being bound.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fovea.domain import constants as c
from fovea.localcluster import dra, nodes, podnet
from fovea.localcluster.logserver import KubeletLogServer
from fovea.localcluster.nodes import NodePlan
from fovea.localcluster.pki import Pki
from fovea.localcluster.podrunner import AgentContext, PodRunner
from fovea.localcluster.podstatus import rfc3339, rfc3339_micro
from fovea.localcluster.rest import MERGE_PATCH, ApiError, Rest

LEASE_DURATION_S = 40
LEASE_RENEW_S = 10.0
NODE_STATUS_EVERY_S = 60.0
WATCH_TIMEOUT_S = 240
RETRY_S = 1.0


class NodeAgent:
    """Registers the nodes and runs the pods bound to them, until `stop()`."""

    def __init__(self, ctx: AgentContext, kube_version: str, pki: Pki | None = None) -> None:
        self.ctx = ctx
        self.kube_version = kube_version
        # The kubelet's log endpoint for `kubectl logs`, with the cluster's certificates.
        self._logs = (
            KubeletLogServer(
                self.pod_log, pki.kubelet_serving_cert, pki.kubelet_serving_key, pki.ca_cert
            )
            if pki is not None
            else None
        )
        self.kubelet_port = self._logs.port if self._logs is not None else 0
        self.kernel = os.uname().release
        self._runners: dict[str, PodRunner] = {}
        self._runner_node: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ports: dict[str, int] = {}  # pod uid -> the port its process was given
        # Each pod's own address (podnet); the pool is chosen at start.
        self._addresses: podnet.AddressPool | None = None

    @property
    def rest(self) -> Rest:
        return self.ctx.rest

    def log(self, message: str) -> None:
        self.ctx.log(message)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Register nodes, then list (and start) their pods and watch them from there."""
        if self._logs is not None:
            self._logs.start()
        self._addresses = podnet.AddressPool(podnet.prepare_network(self.log))
        self.register_nodes()
        for name in self.ctx.nodes:
            listed = threading.Event()
            thread = threading.Thread(
                target=self._watch_node, args=(name, listed), name=f"watch-{name}", daemon=True
            )
            thread.start()
            listed.wait(30)
        threading.Thread(target=self._heartbeat, name="node-heartbeat", daemon=True).start()

    def stop(self) -> None:
        """End every pod process (the pod objects stay, as with a stopped kubelet)."""
        self._stop.set()
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.shutdown()
        for runner in runners:
            runner.join(30)
        if self._logs is not None:
            self._logs.stop()

    def pod_log(
        self, namespace: str, name: str, container: str | None = None
    ) -> tuple[Path, bool] | None:
        """The log file of a container of pod `namespace/name` (an init container's, or the
        pod's container's), and whether its process may still write it."""
        with self._lock:
            mine = [
                runner
                for runner in self._runners.values()
                if (runner.namespace, runner.name) == (namespace, name)
            ]
        if mine:
            path, running = mine[0].log_of(container)
            return (path, running) if path.exists() else None
        logs = self.ctx.state.pod_logs
        runs = sorted(
            list(logs.glob(f"{namespace}_{name}_*/{container}.log")) if container else [],
            key=lambda p: p.stat().st_mtime,
        ) or sorted(logs.glob(f"{namespace}_{name}_*.log"), key=lambda p: p.stat().st_mtime)
        return (runs[-1], False) if runs else None

    # --- nodes ----------------------------------------------------------------------------

    def register_nodes(self) -> None:
        """Create or refresh each planned Node and its Lease; remove nodes no longer planned."""
        now = rfc3339()
        self._create_device_class()
        for plan in self.ctx.nodes.values():
            uid = self._register(plan, now)
            self._renew_lease(plan.name, uid)
            self._publish_devices(plan, uid)
        listed = self.rest.get("/api/v1/nodes", labelSelector=f"{c.LABEL_LOCAL_NODE}=true")
        for node in listed.get("items", []):
            name = node["metadata"]["name"]
            if name not in self.ctx.nodes:
                self.log(f"removing node {name}: not in this cluster's --gpus any more")
                try:
                    self.rest.request("DELETE", f"/api/v1/nodes/{name}")
                except ApiError as exc:
                    if exc.status != 404:
                        raise

    def _register(self, plan: NodePlan, now: str) -> str:
        body = nodes.node_object(plan, self.kube_version, now, self.kernel, self.kubelet_port)
        try:
            created = self.rest.request("POST", "/api/v1/nodes", body=body)
            return str(created["metadata"]["uid"])
        except ApiError as exc:
            if exc.status != 409:
                raise
        # Registered by an earlier start: labels and status may have changed (e.g. --gpus).
        existing = self.rest.get(f"/api/v1/nodes/{plan.name}")
        labels: dict[str, str | None] = {
            key: None
            for key in existing["metadata"].get("labels", {})
            if key.startswith("nvidia.com/") or key == c.NODE_LABEL_SIMULATED
        }
        labels.update(nodes.node_labels(plan))
        self.rest.request(
            "PATCH",
            f"/api/v1/nodes/{plan.name}",
            body={"metadata": {"labels": labels}},
            content_type=MERGE_PATCH,
        )
        self._patch_node_status(plan, now)
        return str(existing["metadata"]["uid"])

    def _create_device_class(self) -> None:
        """The DeviceClass gpu.nvidia.com (DRA), as the NVIDIA driver's chart installs it."""
        try:
            self.rest.request("POST", f"{dra.API_PATH}/deviceclasses", body=dra.device_class())
        except ApiError as exc:
            if exc.status != 409:
                raise

    def _publish_devices(self, plan: NodePlan, node_uid: str) -> None:
        """The node's GPUs as a ResourceSlice of driver gpu.nvidia.com (replaced if it exists)."""
        body = dra.resource_slice(plan, node_uid)
        if body is None:
            return
        base = f"{dra.API_PATH}/resourceslices"
        try:
            self.rest.request("POST", base, body=body)
            return
        except ApiError as exc:
            if exc.status != 409:
                raise
        path = f"{base}/{dra.slice_name(plan.name)}"
        existing = self.rest.get(path)
        if existing.get("spec", {}).get("devices") == body["spec"]["devices"]:
            return
        generation = int(existing["spec"]["pool"].get("generation", 1)) + 1
        body = dra.resource_slice(plan, node_uid, generation) or body
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        self.rest.request("PUT", path, body=body)

    def _patch_node_status(self, plan: NodePlan, now: str) -> None:
        status = nodes.node_status(plan, self.kube_version, now, self.kernel, self.kubelet_port)
        self.rest.request(
            "PATCH",
            f"/api/v1/nodes/{plan.name}/status",
            body={"status": status},
            content_type=MERGE_PATCH,
        )

    def _renew_lease(self, name: str, node_uid: str | None) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        renew = {"spec": {"renewTime": rfc3339_micro(), "holderIdentity": name}}
        try:
            self.rest.request("PATCH", path, body=renew, content_type=MERGE_PATCH)
            return
        except ApiError as exc:
            if exc.status != 404 or node_uid is None:
                raise
        lease = nodes.lease_object(name, node_uid, rfc3339_micro(), LEASE_DURATION_S)
        self.rest.request(
            "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body=lease
        )

    def _heartbeat(self) -> None:
        last_status = time.monotonic()
        while not self._stop.wait(LEASE_RENEW_S):
            try:
                status_due = time.monotonic() - last_status >= NODE_STATUS_EVERY_S
                for plan in self.ctx.nodes.values():
                    self._renew_lease(plan.name, None)
                    if status_due:
                        self._patch_node_status(plan, rfc3339())
                if status_due:
                    last_status = time.monotonic()
            except ApiError as exc:
                if exc.status == 404:
                    # A node was deleted by hand: register it again, like a kubelet.
                    self._guard(self.register_nodes)
                else:
                    self.log(f"node heartbeat failed (retrying): {exc}")
            except Exception as exc:  # the heartbeat must outlive anything, as the watches do
                self.log(f"node heartbeat failed (retrying): {exc!r}")

    # --- pods -----------------------------------------------------------------------------

    def _watch_node(self, node: str, listed: threading.Event) -> None:
        """List, then watch, the pods bound to `node`; relist on expiry or error."""
        selector = f"spec.nodeName={node}"
        while not self._stop.is_set():
            try:
                pods = self.rest.get("/api/v1/pods", fieldSelector=selector)
                self._reconcile(node, pods.get("items", []))
                listed.set()
                version = pods["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    version = self._follow(selector, version)
            except _Relist:
                continue
            except Exception as exc:  # the watch must outlive API hiccups
                if not self._stop.is_set():
                    self.log(f"pod watch for node {node} failed (retrying): {exc!r}")
                    self._stop.wait(RETRY_S)

    def _follow(self, selector: str, version: str) -> str:
        """One watch request; returns the resourceVersion to continue from."""
        for event in self.rest.watch(
            "/api/v1/pods", version, WATCH_TIMEOUT_S, fieldSelector=selector
        ):
            if self._stop.is_set():
                break
            kind, obj = event.get("type"), event.get("object", {})
            if kind == "ERROR":
                raise _Relist  # typically 410 Gone: the version is too old
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if kind in ("ADDED", "MODIFIED"):
                self._seen(obj)
            elif kind == "DELETED":
                self._deleted(obj["metadata"]["uid"])
        return version

    def _reconcile(self, node: str, pods: list[dict[str, Any]]) -> None:
        current = {pod["metadata"]["uid"] for pod in pods}
        with self._lock:
            vanished = [
                runner
                for uid, runner in self._runners.items()
                if uid not in current and self._runner_node.get(uid) == node
            ]
        for runner in vanished:
            runner.gone()
        for pod in pods:
            self._seen(pod)

    def _seen(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        node = pod.get("spec", {}).get("nodeName")
        if node not in self.ctx.nodes:
            return
        with self._lock:
            runner = self._runners.get(uid)
            if runner is None:
                if self._stop.is_set():
                    return
                runner = PodRunner(self.ctx, self, pod)
                self._runners[uid] = runner
                self._runner_node[uid] = node
                runner.start()
                return
        runner.update(pod)

    def _deleted(self, uid: str) -> None:
        with self._lock:
            runner = self._runners.get(uid)
        if runner is not None:
            runner.gone()

    def forget(self, uid: str) -> None:
        """Drop a finished runner and release its port and address."""
        with self._lock:
            self._runners.pop(uid, None)
            self._runner_node.pop(uid, None)
            self._ports.pop(uid, None)
        if self._addresses is not None:
            self._addresses.release(uid)

    def allocate_address(self, uid: str, port: int, preferred: str | None) -> str:
        """The pod's own address: `preferred` (where it was reported) when free, else
        a free one of the pool (`podnet.AddressPool`)."""
        if self._addresses is None:
            raise RuntimeError("the node agent has not started")
        return self._addresses.allocate(uid, port, preferred)

    def allocate_port(self, uid: str) -> int:
        """A free loopback port that no other live pod of this agent holds."""
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            with self._lock:
                # Free now, but maybe given to a pod whose server is still starting.
                if port not in self._ports.values():
                    self._ports[uid] = port
                    return port

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            self.log(f"node agent: {exc!r}")


class _Relist(Exception):
    """The watch ended in a way that needs a fresh list."""
