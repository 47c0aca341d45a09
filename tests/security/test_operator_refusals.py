"""The operator's refusals, each with its reason in the selection's status.

- An option's `image` outside the operator's allowlist (default: the project's
  own images) never becomes a pod: Failed, ImageNotAllowed.
- A catalog that slipped past the CRD's rules (an older CRD, a hostile
  model_id) does not parse: the selection says CatalogInvalid, with the reason.
- A model pod that cannot be created as specified (kubelet's
  CreateContainerConfigError: a Secret it names is missing, a root image
  under runAsNonRoot) is the selection's PodConfigError, with kubelet's words.
"""

from __future__ import annotations

from typing import Any

import pytest

from builders import catalog, catalog_spec, cpu_node, option, running, selection, world
from fovea.domain.conditions import ConditionType, Reason
from fovea.domain.resources import Phase
from fovea.operator.images import PROJECT_IMAGES, image_allowed, image_refusal
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Actions, World, reconcile
from fovea.operator.settings import OperatorSettings

OWN = "ghcr.io/fovea-models/model-pod:0.1.0-cuda"


def decide(options: dict[str, dict[str, Any]], settings: PodSettings | None = None) -> Actions:
    model = next(iter(options))
    w: World = world(
        selection("det", model),
        catalogs=[catalog(catalog_spec({"det": options}))],
        nodes=[cpu_node()],
    )
    return reconcile(w, settings or PodSettings()).actions()


def ready_reason(status: dict[str, Any]) -> str:
    return next(c["reason"] for c in status["conditions"] if c["type"] == ConditionType.READY)


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        (OWN, True),
        ("ghcr.io/fovea-models/model-pod@sha256:" + "0" * 64, True),
        ("ghcr.io/fovea-models-evil/model-pod:1", False),
        ("docker.io/library/python:3.12", False),
        ("evil.example/ghcr.io/fovea-models/model-pod:1", False),
    ],
)
def test_the_default_allowlist_is_the_projects_own_images(image: str, allowed: bool) -> None:
    assert image_allowed(image, PROJECT_IMAGES) is allowed
    assert OperatorSettings().allowed_images == list(PROJECT_IMAGES)


def test_an_entry_is_a_repository_or_a_prefix() -> None:
    assert image_allowed("registry.local/models/vllm:0.6", ["registry.local/models/vllm"])
    assert not image_allowed("registry.local/models/vllm-evil:1", ["registry.local/models/vllm"])
    assert image_allowed("registry.local/models/any:1", ["registry.local/models/"])
    assert image_refusal("x:1", []) is not None


def test_an_image_not_allowed_is_refused_with_the_reason_and_runs_nothing() -> None:
    actions = decide({"evil": option(1, cpuMemoryGb=1, image="docker.io/evil/miner:latest")})
    status = actions.status[("ns", "det")]
    assert actions.create == []
    assert status["phase"] == Phase.FAILED
    assert "Image 'docker.io/evil/miner:latest' is not allowed" in status["message"]
    scheduled = next(c for c in status["conditions"] if c["type"] == ConditionType.SCHEDULED)
    assert scheduled["reason"] == Reason.IMAGE_NOT_ALLOWED


def test_allowed_images_run() -> None:
    for image in (OWN, "registry.local/models/vllm:0.6"):
        settings = PodSettings(allowed_images=(*PROJECT_IMAGES, "registry.local/models/"))
        actions = decide({"ok": option(1, cpuMemoryGb=1, image=image)}, settings)
        assert [p["spec"]["containers"][0]["image"] for p in actions.create] == [image], image


def test_the_operators_own_model_pod_image_always_runs() -> None:
    settings = PodSettings(image="registry.local/mine:1", allowed_images=())
    actions = decide({"ok": option(1, cpuMemoryGb=1, image="registry.local/mine:1")}, settings)
    assert len(actions.create) == 1


def test_a_hostile_model_id_in_a_stored_catalog_is_the_selections_reason() -> None:
    actions = decide({"evil": option(1, modelId="--trust-remote-code")})
    status = actions.status[("ns", "det")]
    assert actions.create == [] and status["phase"] == Phase.PENDING
    assert "is invalid" in status["message"] and "must not start with '-'" in status["message"]
    scheduled = next(c for c in status["conditions"] if c["type"] == ConditionType.SCHEDULED)
    assert scheduled["reason"] == Reason.CATALOG_INVALID


def test_a_pod_that_cannot_be_created_as_specified_is_the_selections_reason() -> None:
    options = {"m": option(1, cpuMemoryGb=1)}
    first = decide(options)
    pod = running(first.create[0], ready=False)
    message = 'secret "hf-token" not found'
    pod["status"]["containerStatuses"] = [
        {
            "name": "model-server",
            "ready": False,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}},
        }
    ]
    w = world(
        selection("det", "m"),
        catalogs=[catalog(catalog_spec({"det": options}))],
        nodes=[cpu_node()],
        pods=[pod],
    )
    status = reconcile(w, PodSettings()).actions().status[("ns", "det")]
    assert status["phase"] == Phase.PENDING
    assert message in status["message"] and pod["metadata"]["name"] in status["message"]
    assert ready_reason(status) == Reason.POD_CONFIG_ERROR
