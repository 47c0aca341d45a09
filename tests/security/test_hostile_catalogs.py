"""Hostile catalogs are refused with their reason: at import, at apply (CEL) and by the operator.

A catalog writer must not be able to run code through a model pod: a
`model_id` read as an engine's flag, or naming a file outside the model
directory (which would then be unpickled), is refused wherever a catalog
enters the system. An image that is not allowed is the operator's refusal
(its allowlist is the operator's setting); the operator's other refusals
are in test_operator_refusals.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from fovea.domain.catalog import CatalogError, parse_models_yaml
from fovea.domain.conditions import ConditionType, Reason
from fovea.domain.resources import MODEL_DIR, Phase, model_id_problem
from kube_testing import Kube, eventually

# (model_id, what the refusal says)
HOSTILE = [
    ("--trust-remote-code", "must not start with '-'"),
    ("-m", "must not start with '-'"),
    ("/etc/passwd", f"must be under {MODEL_DIR}/"),
    ("/tmp/evil.pt", f"must be under {MODEL_DIR}/"),
    (f"{MODEL_DIR}/../etc/shadow", "'..' path segment"),
    ("../../home/user/model.pt", "'..' path segment"),
    ("weights/../../x.pt", "'..' path segment"),
]
FINE = ["yolov8n", "org/bert-tiny", f"{MODEL_DIR}/yolov8n.pt", "weights/a..b.pt", "a-b_c.d"]


def models_yaml(model_id: str) -> str:
    return (
        "tasks:\n"
        "  object_detection:\n"
        "    selected: evil\n"
        "    options:\n"
        "      evil:\n"
        f"        model_id: {model_id!r}\n"
        "        vram_mb: 100\n"
        "inference:\n"
        "  max_memory_per_model: auto\n"
    )


@pytest.mark.parametrize("model_id", FINE)
def test_ordinary_model_ids_are_fine(model_id: str) -> None:
    assert model_id_problem(model_id) is None
    assert parse_models_yaml(models_yaml(model_id)).spec.tasks["object_detection"]


@pytest.mark.parametrize(("model_id", "reason"), HOSTILE)
def test_import_refuses_a_hostile_model_id_with_the_reason(model_id: str, reason: str) -> None:
    with pytest.raises(CatalogError) as refused:
        parse_models_yaml(models_yaml(model_id), "evil.yaml")
    message = str(refused.value)
    assert "evil.yaml" in message and "'object_detection'" in message and "'evil'" in message
    assert reason in message, message


def catalog_spec(model_id: str) -> dict[str, Any]:
    option = {"modelId": model_id, "vramMb": 100}
    return {"tasks": {"object_detection": {"options": {"evil": option}}}, "inference": {}}


@pytest.mark.integration
def test_the_api_server_refuses_a_hostile_model_id_with_the_reason(kube: Kube) -> None:
    """The CRD's CEL rules: `kubectl apply` of such a catalog never reaches the operator."""
    for model_id, reason in HOSTILE:
        with pytest.raises(ApiException) as refused:
            kube.apply_catalog(catalog_spec(model_id), name="evil")
        assert refused.value.status == 422, refused.value.body
        assert "modelId" in refused.value.body and reason in refused.value.body, model_id
    for model_id in FINE:
        kube.apply_catalog(catalog_spec(model_id), name="fine")


@pytest.mark.integration
def test_the_operator_refuses_an_image_not_allowed_with_the_reason(
    kube: Kube, operator: None
) -> None:
    """The image is free text to the CRD; the operator's allowlist decides, and says why."""
    option = {"modelId": "mlp-tiny", "vramMb": 100, "image": "docker.io/evil/miner:latest"}
    kube.apply_catalog({"tasks": {"object_detection": {"options": {"evil": option}}}})
    kube.select("object_detection", "evil")

    def refused() -> dict[str, Any] | None:
        status = kube.status("object_detection")
        return status if status.get("phase") == Phase.FAILED else None

    status = eventually(refused, timeout=60)
    assert status, kube.status("object_detection")
    assert "Image 'docker.io/evil/miner:latest' is not allowed" in status["message"]
    reasons = {cond["type"]: cond["reason"] for cond in status["conditions"]}
    assert reasons[ConditionType.SCHEDULED] == Reason.IMAGE_NOT_ALLOWED
    assert kube.model_pods() == []
