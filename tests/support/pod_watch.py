"""Records when each pod of a namespace is first seen Running (benches share it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fovea.localcluster.rest import Rest


class RunningWatch:
    """Records when each pod of a namespace is first seen Running (via a watch)."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.rest, self.namespace = Rest(kubeconfig, pool_size=2), namespace
        self.running: dict[str, float] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        version = self.rest.get(path)["metadata"]["resourceVersion"]
        self._ready.set()
        for event in self.rest.watch(path, version, 600):
            obj: dict[str, Any] = event.get("object", {})
            name = obj.get("metadata", {}).get("name")
            if obj.get("status", {}).get("phase") == "Running" and name not in self.running:
                self.running[name] = time.monotonic()

    def close(self) -> None:
        self.rest.close()
