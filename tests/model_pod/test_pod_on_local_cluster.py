"""End to end on the local cluster: the operator's pod spec, run by the node agent, reports Ready.

The pod is built by the operator's own pure builder and created directly (the
operator's reconciling is its own suite's business): the node agent runs
`fovea-models model-pod` as a process on a simulated GPU node with a service
account token, probes /readyz, and the process writes its selection's
status.runtime through RBAC that allows exactly that.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
from kubernetes import client
from PIL import Image

from fovea.domain import constants as c
from fovea.domain.resources import ModelOption, selection_name
from fovea.kube import api_client
from fovea.operator.podspec import PodSettings, SelectionRef, Target, build_pod
from kube_testing import Kube, eventually

SERVICE_ACCOUNT = PodSettings().service_account


def grant_status_writes(kube: Kube) -> None:
    """What the model pod's service account needs: read and patch-status of selections."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    kube.core.create_namespaced_service_account(
        kube.namespace, {"metadata": {"name": SERVICE_ACCOUNT}}
    )
    rbac.create_namespaced_role(
        kube.namespace,
        {
            "metadata": {"name": SERVICE_ACCOUNT},
            "rules": [
                {
                    "apiGroups": [c.GROUP],
                    "resources": [f"{c.SELECTION_PLURAL}/status"],
                    "verbs": ["get", "patch"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        kube.namespace,
        {
            "metadata": {"name": SERVICE_ACCOUNT},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": SERVICE_ACCOUNT,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": kube.namespace}
            ],
        },
    )


def simulated_gpu_node(kube: Kube) -> str:
    nodes = kube.core.list_node(label_selector=c.NODE_LABEL_SIMULATED).items
    assert nodes, "the local cluster has no simulated GPU node"
    return str(nodes[0].metadata.name)


def test_detector_pod_runs_and_reports_ready(
    kubeconfig: str, namespace: str, selection_crds: None
) -> None:
    kube = Kube(api_client(kubeconfig), kubeconfig, namespace)
    grant_status_writes(kube)
    task = "object_detection"
    kube.select(task, "yolo-tiny")
    selection = kube.selection(task)
    option = ModelOption(
        model_id="/models/yolov8n.pt",
        framework="ultralytics",
        vram_gb=0.5,
        cpu_memory_gb=1.0,
        allow_random_weights=True,
    )
    ref = SelectionRef(
        namespace, selection_name(task), selection["metadata"]["uid"], task, "yolo-tiny"
    )
    pod = build_pod(ref, option, Target(node=simulated_gpu_node(kube), gpu_index=0), PodSettings())
    kube.core.create_namespaced_pod(namespace, pod)
    name = pod["metadata"]["name"]

    def runtime() -> dict[str, Any]:
        return dict(kube.status(task).get("runtime") or {})

    ready = eventually(
        lambda: runtime() if runtime().get("state") == "Ready" else None, timeout=180, interval=1.0
    )
    assert ready, (runtime(), (kube.pod(name) or {}).get("status"))
    assert ready["pod"] == name
    assert ready["device"] == "cpu" and ready["simulatedGpu"] is True
    assert "GPU is simulated" in ready["reason"]
    assert ready["randomWeights"] is True
    assert ready["measuredMemoryGb"] > 0.01  # yolov8n: about 12 MB of float32 weights

    def pod_ready() -> dict[str, Any] | None:
        found = kube.pod(name)
        conditions = (found or {}).get("status", {}).get("conditions") or []
        ok = any(cond["type"] == "Ready" and cond["status"] == "True" for cond in conditions)
        return found if ok else None

    running = eventually(pod_ready, timeout=60, interval=0.5)
    assert running, (kube.pod(name) or {}).get("status")
    port = running["metadata"]["annotations"][c.ANNOTATION_LOCAL_PORT]
    address = running["status"]["podIP"]  # each local pod has its own (podnet)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG")
    answer = httpx.post(
        f"http://{address}:{port}/predict",
        json={"image": base64.b64encode(buffer.getvalue()).decode()},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert "detections" in answer.json()
    assert eventually(lambda: runtime().get("lastUsed"), timeout=20)
    kube.core.delete_namespaced_pod(name, namespace)
