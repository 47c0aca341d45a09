"""Weights progress you can see, on the real local cluster with the real operator and API:
/api/models/status `loading`, SSE events and `fovea-models select --wait`, while the pod's
fetch-weights container reads a throttled HTTP server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_server import ApiServer
from fovea.api.settings import Settings
from kube_testing import Kube, tiny_catalog, tiny_option

pytestmark = pytest.mark.integration

TASK = "det"
ARCH = "mlp:64,4096,10"  # about 1.2 MB of float32 weights
CHUNK = 32 * 1024
CHUNK_PAUSE_S = 0.1  # about 320 kB/s: the fetch takes a few seconds, so it reports a few times


class _Throttled(BaseHTTPRequestHandler):
    payload = b""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        for start in range(0, len(self.payload), CHUNK):
            self.wfile.write(self.payload[start : start + CHUNK])
            self.wfile.flush()
            time.sleep(CHUNK_PAUSE_S)


@pytest.fixture
def slow_weights(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A loopback server that serves the weights of ARCH slowly: (URL, size)."""
    import torch
    from safetensors.torch import save_file

    from fovea.model_pod.adapters.adapter_torch import architecture

    module = architecture(ARCH).build()
    torch.manual_seed(0)
    path = tmp_path / "mlp.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    handler = type("Handler", (_Throttled,), {"payload": path.read_bytes()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mlp.safetensors", path.stat().st_size
    server.shutdown()
    server.server_close()


@pytest.fixture
def api(kubeconfig: str, namespace: str, crds: None) -> Iterator[ApiServer]:
    server = ApiServer(Settings(kubeconfig=kubeconfig, namespace=namespace)).start()
    server.wait_ready()
    yield server
    server.stop()


def _sse(url: str, events: list[tuple[str, dict[str, Any]]], stop: threading.Event) -> None:
    with httpx.Client(timeout=None) as http, http.stream("GET", f"{url}/api/models/events") as r:
        kind = ""
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "selection":
                events.append((kind, json.loads(line.removeprefix("data: "))))


def _poll(url: str, seen: list[dict[str, Any]], stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as http:
        while not stop.is_set():
            loading = http.get(f"{url}/api/models/status").json().get("loading", {})
            if TASK in loading:
                seen.append(loading[TASK])
            stop.wait(0.2)


def _background(*targets: Callable[[], None]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads


def test_select_wait_shows_the_fetch_then_the_load_and_the_api_shows_the_bytes(
    kube: Kube, operator: None, api: ApiServer, slow_weights: tuple[str, int]
) -> None:
    url, size = slow_weights
    option = tiny_option(0.5, modelId=ARCH, architecture=ARCH, allowRandomWeights=False)
    kube.apply_catalog(tiny_catalog({TASK: {"m": {**option, "weights": url}}}))
    events: list[tuple[str, dict[str, Any]]] = []
    loading: list[dict[str, Any]] = []
    stop = threading.Event()
    threads = _background(
        lambda: _sse(api.url, events, stop), lambda: _poll(api.url, loading, stop)
    )
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOVEA_API")}
        command = [sys.executable, "-P", "-m", "fovea.cli", "select", TASK, "m", "--wait"]
        done = subprocess.run(
            [*command, "--timeout", "240", "--api", api.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert done.returncode == 0, done.stdout + done.stderr

    # The CLI (not on a terminal): plain lines, the fetch by tenths, then the load.
    lines = done.stderr.splitlines()
    fetching = [line for line in lines if line.startswith(f"{TASK}: m: fetching weights: ")]
    assert len(fetching) >= 2, done.stderr
    assert f"{TASK}: m: loading (weights fetched: " in done.stderr, done.stderr
    assert f"{TASK}: m is Ready" in done.stdout

    # /api/models/status: a `loading` entry with the bytes while it fetched, then loading.
    # (Before the fetch's first report the operator says only that it is starting.)
    fetches = [e for e in loading if e["phase"] == "fetching" and e["bytes_total"] is not None]
    assert fetches, loading
    assert all(entry["bytes_total"] == size for entry in fetches), fetches
    assert any(0 < entry["bytes_done"] < size for entry in fetches), fetches
    assert fetches[0]["weights"]["source"] == url and fetches[0]["model"] == "m"
    assert kube.status(TASK)["phase"] in ("Ready", "CPUFallback")

    # SSE: selection events carry the fetch's progress, then the cached weights.
    reports = [data["weights"] for _, data in events if data.get("weights")]
    assert any(w["phase"] == "Fetching" and w["bytes_done"] < size for w in reports), reports
    assert reports[-1]["phase"] == "Cached" and reports[-1]["fetched_bytes"] == size
