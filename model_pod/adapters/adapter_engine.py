"""sglang and vLLM: the engine's OpenAI-compatible server as a watched child process.

Loading starts the server on a free loopback port with the memory fraction
the plan allows, and waits until its health check answers (or it exits, or a
deadline passes: each is a failure with the engine's last output as reason).
A thread then waits on the child: if it dies, `failure()` says how, and the
model pod reports Failed. The child runs in its own process group so that
closing stops its workers too.

Predict forwards an OpenAI request body: `{"messages": [...], ...}` to
`/v1/chat/completions`, `{"prompt": ..., ...}` to `/v1/completions`, and
returns the engine's JSON answer.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fovea.model_pod.adapters.base import (
    LoadedModel,
    LoadError,
    ModelSpec,
    PredictError,
    weights_location,
)
from fovea.model_pod.adapters.engine_commands import (
    Engine,
    EngineLaunch,
    child_visible_devices,
    memory_fraction,
)
from fovea.model_pod.settings import child_environment, get_settings

OUTPUT_LINES_KEPT = 40
REASON_LINES = 6
DEFAULT_START_TIMEOUT_SECONDS = 900.0  # engines compile kernels and capture graphs on start
STOP_GRACE_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 300.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def weights_on_disk(model_id: str) -> bool:
    """True if the weights are a local directory or already in the Hugging Face cache."""
    if Path(model_id).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(model_id, filename), str):
            return True
    return False


class EngineAdapter:
    """Runs one engine server as a child process and watches it."""

    def __init__(
        self,
        spec: ModelSpec,
        engine: Engine,
        start_timeout: float = DEFAULT_START_TIMEOUT_SECONDS,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        self._closing = threading.Event()
        self._failure: str | None = None
        # Watches the running child; ends when it exits (a failure unless we stopped it).
        self.watcher: threading.Thread | None = None
        self.served_model = spec.model_id  # the fetched weights' path when there are some

    @property
    def module(self) -> Any:
        return None  # the weights live in the child process

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- starting ----------------------------------------------------------------

    def load(self, device: str) -> LoadedModel:
        missing = self.engine.missing()
        if missing:
            raise LoadError(missing)
        env = child_environment()
        fraction: float | None = None
        if device.startswith("cuda"):
            fraction, env["CUDA_VISIBLE_DEVICES"] = self._gpu_settings(device)
        elif self.engine.requires_gpu:
            raise LoadError(f"{self.engine.name} needs a CUDA GPU; this pod runs on {device}")
        self.served_model = weights_location(self.spec, want_file=False)
        random_weights = self.spec.allow_random_weights and not weights_on_disk(self.served_model)
        self.port = free_port()
        launch = EngineLaunch(
            model=self.served_model,
            port=self.port,
            memory_fraction=fraction,
            random_weights=random_weights,
        )
        command = list(self.engine.command(launch))
        print(f"starting {self.engine.name}: {' '.join(command)}", flush=True)
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: close() stops its workers too
        )
        threading.Thread(target=self._pump_output, daemon=True).start()
        self._wait_healthy()
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()
        source = (
            f"random weights: {self.engine.name} --load-format dummy "
            f"(weights for {self.spec.model_id} are not on disk)"
            if random_weights
            else f"{self.engine.name} server loaded {self.spec.model_id}"
        )
        return LoadedModel(
            device=device, random_weights=random_weights, source=source, pid=self.process.pid
        )

    def _gpu_settings(self, device: str) -> tuple[float, str]:
        from fovea.model_pod.measure import cuda_index, device_total_bytes

        index = cuda_index(device)
        total = device_total_bytes(index)
        try:
            visible = child_visible_devices(index, get_settings().cuda_visible_devices)
            fraction = memory_fraction(self.spec.declared_vram_gb, total or 0)
        except ValueError as exc:
            raise LoadError(f"cannot start {self.engine.name}: {exc}") from exc
        return fraction, visible

    def _pump_output(self) -> None:
        """Keep the engine's last lines (for failure reasons) and pass them to our log."""
        process = self.process
        if process is None or process.stdout is None:
            return
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            print(f"[{self.engine.name}] {line}", file=sys.stderr, flush=True)

    def _tail(self) -> str:
        lines = [line for line in self.output if line.strip()][-REASON_LINES:]
        return " | ".join(lines) if lines else "(no output)"

    def _wait_healthy(self) -> None:
        process = self.process
        assert process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                time.sleep(0.2)  # let the output pump read the last lines
                raise LoadError(
                    f"{self.engine.name} exited with code {code} while starting: {self._tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.25)
        self._stop()
        raise LoadError(
            f"{self.engine.name} did not answer {self.engine.health_path} within "
            f"{self.start_timeout:g} s: {self._tail()}"
        )

    def healthy(self, timeout: float = 2.0) -> bool:
        """True if the engine's health check answers 200 now."""
        try:
            with urllib.request.urlopen(
                self.base_url + self.engine.health_path, timeout=timeout
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _watch(self) -> None:
        process = self.process
        if process is None:
            return
        code = process.wait()
        if not self._closing.is_set():
            time.sleep(0.2)  # let the output pump read the last lines
            self._failure = f"{self.engine.name} server exited with code {code}: {self._tail()}"

    # --- serving -----------------------------------------------------------------

    def warmup(self, batch_size: int) -> None:
        """Nothing to add: engines warm up (and capture CUDA graphs) before they report healthy."""

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        if "messages" in payload:
            path = "/v1/chat/completions"
        elif "prompt" in payload:
            path = "/v1/completions"
        else:
            raise PredictError('expected an OpenAI request body with "messages" or "prompt"')
        body = {"model": self.served_model, **payload}
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise PredictError(
                f"{self.engine.name} refused the request ({exc.code}): "
                f"{exc.read().decode(errors='replace')[:300]}"
            ) from exc
        if not isinstance(answer, dict):
            raise PredictError(f"{self.engine.name} answered with something other than an object")
        return answer

    def failure(self) -> str | None:
        return self._failure

    # --- stopping ----------------------------------------------------------------

    def _stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        self._closing.set()
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self._closing.set()
        self._stop()
