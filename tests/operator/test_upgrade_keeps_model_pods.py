"""An upgrade of fovea-models alone replaces no model pod (issue 27).

A model pod's name carries its spec's hash, so anything in the spec that
changes with the release would rename, and so replace, every running model
pod at each upgrade. The release reaches a model pod's spec in one place only:
the operator's model-pod image (FOVEA_OPERATOR_MODEL_POD_IMAGE), whose tag is
the version. It is hashed without its tag; an image the catalog names is hashed whole.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fovea.domain import constants as c
from fovea.domain.resources import ModelOption
from fovea.operator.podspec import PodSettings, SelectionRef, Target, build_pod

SEL = SelectionRef("team-a", "object-detection", "uid-1", "object_detection", "yolov8n")
OPTION = ModelOption(model_id="yolov8n", framework="ultralytics", vram_mb=512, cpu_memory_gb=1.0)
TARGET = Target("gpu-node-0", 0)
THIS = PodSettings(image="ghcr.io/fovea-models/model-pod:0.1.0-cuda")
NEXT = dataclasses.replace(THIS, image="ghcr.io/fovea-models/model-pod:0.2.0-cuda")


def identity(pod: dict[str, Any]) -> tuple[str, str]:
    return pod["metadata"]["name"], pod["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH]


def test_the_next_releases_model_pod_image_keeps_the_pods_name_and_hash() -> None:
    before, after = build_pod(SEL, OPTION, TARGET, THIS), build_pod(SEL, OPTION, TARGET, NEXT)
    assert identity(before) == identity(after)
    # Nothing pretends: a pod built now runs the new release's image.
    assert after["spec"]["containers"][0]["image"] == NEXT.image
    assert before["spec"]["containers"][0]["image"] == THIS.image


def test_another_repository_for_the_model_pods_still_rolls_them() -> None:
    mirror = dataclasses.replace(THIS, image="registry.example/mirror/model-pod:0.1.0-cuda")
    a, b = build_pod(SEL, OPTION, TARGET, THIS), build_pod(SEL, OPTION, TARGET, mirror)
    assert identity(a) != identity(b)


def test_an_image_the_catalog_names_still_rolls_the_pod() -> None:
    mine = OPTION.model_copy(update={"image": "registry.example/team/server:1"})
    theirs = OPTION.model_copy(update={"image": "registry.example/team/server:2"})
    a, b = build_pod(SEL, mine, TARGET, THIS), build_pod(SEL, theirs, TARGET, THIS)
    assert identity(a) != identity(b)


def test_a_change_that_matters_to_the_pod_still_rolls_it() -> None:
    one = build_pod(SEL, OPTION, TARGET, THIS)
    four = build_pod(SEL, OPTION, TARGET, NEXT, batch_size=4)
    assert identity(one)[0] != identity(four)[0]
