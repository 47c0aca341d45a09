"""Reading the model pod's identity from its environment."""

from __future__ import annotations

import pytest

from fovea.domain import constants as c
from fovea.model_pod.identity import IdentityError, identity_from_env

BASE = {
    c.ENV_TASK: "object_detection",
    c.ENV_MODEL: "yolo-tiny",
    c.ENV_MODEL_ID: "yolov8n.pt",
    c.ENV_FRAMEWORK: "ultralytics",
    c.ENV_DEVICE: "cuda:1",
    c.ENV_SELECTION: "object-detection",
    c.ENV_NAMESPACE: "fovea",
    c.ENV_POD_NAME: "model-object-detection-abc",
    c.ENV_DECLARED_VRAM_GB: "0.5",
    c.ENV_BATCH_SIZE: "4",
    c.ENV_ALLOW_RANDOM_WEIGHTS: "1",
    c.ENV_ARCHITECTURE: "",
    c.ENV_PORT: "18080",
    c.ENV_HOST: "198.18.0.4",
}


def test_reads_every_setting() -> None:
    identity = identity_from_env(BASE)
    assert identity.spec.task == "object_detection"
    assert identity.spec.model_id == "yolov8n.pt"
    assert identity.spec.batch_size == 4
    assert identity.spec.declared_vram_gb == 0.5
    assert identity.spec.allow_random_weights is True
    assert identity.spec.architecture is None  # empty means none, as the operator writes it
    assert identity.framework == "ultralytics"
    assert identity.device == "cuda:1"
    assert identity.simulated_gpu is False
    assert (identity.selection, identity.namespace) == ("object-detection", "fovea")
    assert identity.pod_name == "model-object-detection-abc"
    assert identity.port == 18080
    assert identity.host == "198.18.0.4"
    assert identity.reports


def test_defaults() -> None:
    env = {k: BASE[k] for k in (c.ENV_TASK, c.ENV_MODEL_ID, c.ENV_FRAMEWORK)}
    identity = identity_from_env(env)
    assert identity.device == "cpu"
    assert identity.spec.batch_size == 1
    assert identity.spec.allow_random_weights is False
    assert identity.port == c.MODEL_POD_PORT
    assert identity.host == "0.0.0.0"
    assert not identity.reports


def test_simulated_gpu_runs_on_the_cpu_and_says_so() -> None:
    identity = identity_from_env({**BASE, c.ENV_SIMULATED_GPU: "1"})
    assert identity.planned_device == "cuda:1"
    assert identity.device == "cpu"
    assert identity.simulated_gpu is True


def test_a_cpu_plan_on_a_simulated_node_is_not_a_simulated_gpu() -> None:
    identity = identity_from_env({**BASE, c.ENV_DEVICE: "cpu", c.ENV_SIMULATED_GPU: "1"})
    assert identity.device == "cpu"
    assert identity.simulated_gpu is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({c.ENV_TASK: ""}, "FOVEA_TASK is not set"),
        ({c.ENV_MODEL_ID: " "}, "FOVEA_MODEL_ID is not set"),
        ({c.ENV_FRAMEWORK: "tensorflow"}, "is not one of"),
        ({c.ENV_FRAMEWORK: "external_api"}, "runs no model server"),
        ({c.ENV_DEVICE: "gpu0"}, "must be 'cpu' or 'cuda:N'"),
        ({c.ENV_BATCH_SIZE: "0"}, "must lie in [1, 1024]"),
        ({c.ENV_BATCH_SIZE: "two"}, "is not an integer"),
        ({c.ENV_DECLARED_VRAM_GB: "-1"}, "must not be negative"),
        ({c.ENV_DECLARED_VRAM_GB: "lots"}, "is not a number"),
        ({c.ENV_PORT: "70000"}, "must lie in [1, 65535]"),
        ({c.ENV_HOST: "pod.local"}, "HOST='pod.local' is not an IP address"),
        ({c.ENV_SELECTION: "Not_A_Name"}, "is not a valid Kubernetes name"),
        ({c.ENV_NAMESPACE: ""}, "FOVEA_NAMESPACE is not"),
    ],
)
def test_bad_settings_name_the_variable(override: dict[str, str], message: str) -> None:
    with pytest.raises(IdentityError, match=None) as caught:
        identity_from_env({**BASE, **override})
    assert message in str(caught.value)
