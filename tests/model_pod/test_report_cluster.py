"""Reporting against the real API server: its own selection only, through conflicts and gaps."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kubernetes.client.exceptions import ApiException

from fovea.domain import constants as c
from fovea.domain.resources import RuntimeReport, selection_name
from fovea.kube import api_client
from fovea.model_pod.report import Reporter, selection_patcher
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def kube(kubeconfig: str, namespace: str, selection_crds: None) -> Kube:
    return Kube(api_client(kubeconfig), kubeconfig, namespace)


def runtime_of(kube: Kube, task: str) -> dict[str, Any]:
    return dict(kube.status(task).get("runtime") or {})


def test_writes_its_own_selection_and_nothing_else(kube: Kube) -> None:
    kube.select("object_detection", "yolo")
    kube.select("embedding", "bert")
    kube.patch_status("object_detection", {"phase": "Loading", "message": "by the operator"})
    before_other = kube.selection("embedding")

    send = selection_patcher(kube.api, kube.namespace, selection_name("object_detection"))
    reporter = Reporter(send)
    reporter.start()
    reporter.set(RuntimeReport(state="Loading", pod="p", model_id="yolov8n.pt", device="cpu"))
    assert reporter.wait_delivered(15)
    reporter.set(
        RuntimeReport(
            state="Ready",
            pod="p",
            model_id="yolov8n.pt",
            device="cpu",
            measured_memory_gb=0.0118,
            memory_breakdown={"parametersGb": 0.0118},
            load_time_seconds=1.5,
        )
    )
    assert reporter.wait_delivered(15)
    reporter.stop()

    status = kube.status("object_detection")
    runtime = status["runtime"]
    assert runtime["state"] == "Ready"
    assert runtime["measuredMemoryGb"] == pytest.approx(0.0118)
    assert runtime["memoryBreakdown"] == {"parametersGb": pytest.approx(0.0118)}
    assert runtime["heartbeat"].endswith("Z")
    # The operator's part of the status is left as it was.
    assert status["phase"] == "Loading" and status["message"] == "by the operator"
    after_other = kube.selection("embedding")
    assert after_other.get("status") == before_other.get("status")
    assert after_other["metadata"]["resourceVersion"] == before_other["metadata"]["resourceVersion"]


def test_a_real_conflict_is_retried(kube: Kube) -> None:
    """A write made with a stale resourceVersion gets a real 409; the reporter tries again."""
    kube.select("object_detection", "yolo")
    real = selection_patcher(kube.api, kube.namespace, selection_name("object_detection"))
    conflicts: list[int] = []

    def send(body: dict[str, Any]) -> None:
        if len(conflicts) < 2:
            stale = {**body, "metadata": {"resourceVersion": "1"}}
            try:
                real(stale)
            except ApiException as exc:
                conflicts.append(exc.status)
                raise
        real(body)

    reporter = Reporter(send, backoff=lambda attempt: 0.05)
    reporter.start()
    reporter.set(RuntimeReport(state="Loading", pod="p"))
    assert reporter.wait_delivered(15)
    reporter.stop()
    assert conflicts == [409, 409]
    assert runtime_of(kube, "object_detection")["state"] == "Loading"


def test_a_missing_selection_is_waited_for_not_fatal(kube: Kube) -> None:
    send = selection_patcher(kube.api, kube.namespace, selection_name("late_task"))
    reporter = Reporter(send, heartbeat_seconds=0.5)
    reporter.start()
    reporter.set(RuntimeReport(state="Loading", pod="p"))
    assert not reporter.wait_delivered(1.0)  # 404: nothing to write to yet
    kube.select("late_task", "m")
    assert reporter.wait_delivered(15)
    reporter.stop()
    assert reporter.failures >= 1
    assert runtime_of(kube, "late_task")["state"] == "Loading"


@pytest.mark.parametrize(
    ("framework", "model_id", "architecture"),
    [
        ("pytorch", "mlp-tiny", ""),
        ("transformers", "org/bert-tiny", "bert-tiny"),
        ("ultralytics", "yolov8n.pt", ""),
    ],
)
def test_the_process_reports_ready_with_measured_memory_and_last_use(
    kube: Kube,
    start_model_pod: Callable[..., Any],
    framework: str,
    model_id: str,
    architecture: str,
) -> None:
    task = f"{framework}_task"
    kube.select(task, "opt")
    env = {
        **os.environ,
        "KUBECONFIG": kube.kubeconfig,
        c.ENV_TASK: task,
        c.ENV_MODEL: "opt",
        c.ENV_MODEL_ID: model_id,
        c.ENV_FRAMEWORK: framework,
        c.ENV_DEVICE: "cuda:0",
        c.ENV_SIMULATED_GPU: "1",
        c.ENV_ALLOW_RANDOM_WEIGHTS: "1",
        c.ENV_ARCHITECTURE: architecture,
        c.ENV_BATCH_SIZE: "1",
        c.ENV_SELECTION: selection_name(task),
        c.ENV_NAMESPACE: kube.namespace,
        c.ENV_POD_NAME: f"model-{selection_name(task)}",
    }
    pod = start_model_pod(env)

    def ready() -> dict[str, Any] | None:
        runtime = runtime_of(kube, task)
        return runtime if runtime.get("state") == "Ready" else None

    runtime = eventually(ready, timeout=120, interval=0.5)
    assert runtime, (runtime_of(kube, task), pod.log.read_text())
    assert runtime["measuredMemoryGb"] > 0
    assert runtime["device"] == "cpu" and runtime["simulatedGpu"] is True
    assert runtime["randomWeights"] is True
    assert "simulated" in runtime["reason"]
    assert runtime["pod"] == f"model-{selection_name(task)}"
    assert runtime.get("lastUsed") is None
    payload: dict[str, Any] = {
        "pytorch": {"inputs": [[0.0] * 64]},
        "transformers": {"texts": ["a"]},
        "ultralytics": {"image": _tiny_png_base64()},
    }[framework]
    answer = httpx.post(f"{pod.url}/predict", json=payload, timeout=60)
    assert answer.status_code == 200, answer.text
    used = eventually(lambda: runtime_of(kube, task).get("lastUsed"), timeout=15)
    assert used and used.endswith("Z")


def _tiny_png_base64() -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_load_failure_is_reported_with_its_reason(
    kube: Kube, start_model_pod: Callable[..., Any]
) -> None:
    task = "broken_task"
    kube.select(task, "opt")
    env = {
        **os.environ,
        "KUBECONFIG": kube.kubeconfig,
        c.ENV_TASK: task,
        c.ENV_MODEL_ID: "no-org/no-such-model",
        c.ENV_FRAMEWORK: "transformers",
        c.ENV_SELECTION: selection_name(task),
        c.ENV_NAMESPACE: kube.namespace,
    }
    pod = start_model_pod(env)

    def failed() -> dict[str, Any] | None:
        runtime = runtime_of(kube, task)
        return runtime if runtime.get("state") == "Failed" else None

    runtime = eventually(failed, timeout=90, interval=0.5)
    assert runtime, (runtime_of(kube, task), pod.log.read_text())
    assert "weights for 'no-org/no-such-model' are not on disk" in runtime["reason"]
    assert pod.process.poll() is None  # it stays up, not ready, rather than crash-looping
    assert httpx.get(f"{pod.url}/readyz", timeout=5).status_code == 503
