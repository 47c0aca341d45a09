"""Which ApiClient to use now: rebuilt when the kubeconfig file changes.

A local cluster that is stopped and started again comes back on new ports
and rewrites its kubeconfig; re-reading it lets the API recover without a
restart. In-cluster (no kubeconfig file) the client never changes.
"""

from __future__ import annotations

import logging
import os
import threading

from kubernetes import client

from fovea import kube
from fovea.client_rate import instrument

log = logging.getLogger(__name__)


class ClientSource:
    """Hands out the current ApiClient (thread-safe)."""

    def __init__(self, kubeconfig: str | None = None, qps: float = 0.0, burst: int = 1) -> None:
        self.path = kube.kubeconfig_path(kubeconfig)
        self.qps, self.burst = qps, burst  # every client's rate (fovea.client_rate)
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._client = self._new()  # raises ClusterUnreachable

    @classmethod
    def fixed(cls, api: client.ApiClient) -> ClientSource:
        """A source that always returns `api` (for callers that built their own)."""
        source = cls.__new__(cls)
        source.path = None
        source.qps, source.burst = 0.0, 1
        source._lock = threading.Lock()
        source._stamp = None
        source._client = api
        return source

    def get(self) -> client.ApiClient:
        """The client for the kubeconfig as it is now."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return self._client
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._client = self._new()
                    log.info("kubeconfig %s changed: reconnecting with it", self.path)
                except Exception as exc:  # a half-written file, say: keep the old client
                    log.warning("kubeconfig %s changed but is unusable: %s", self.path, exc)
                self._stamp = stamp
            return self._client

    def _new(self) -> client.ApiClient:
        api = kube.api_client(self.path)
        instrument(api, self.qps, self.burst)
        return api

    def _file_stamp(self) -> tuple[int, int] | None:
        if not self.path:
            return None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)
