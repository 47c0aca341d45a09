"""models.yaml weights: sources, checksums, the cache, credentials and the fetch's env."""

from __future__ import annotations

import pytest
import yaml

from fovea.domain.catalog import CatalogError, catalog_manifest, parse_models_yaml
from fovea.domain.resources import (
    WEIGHTS_CACHE_PATH,
    CatalogSpec,
    WeightsCacheKind,
)

DIGEST = "0123456789abcdef" * 4

WITH_WEIGHTS = f"""
weights_cache: {{kind: shared, claim: model-cache, size_gb: 120}}
weights_credentials: {{secret: hub-token}}
weights_env: {{HF_ENDPOINT: "http://hub.internal:8080", AWS_ENDPOINT_URL: "http://s3.internal"}}
tasks:
  object_detection:
    selected: yolo
    options:
      yolo:
        model_id: yolov8n
        vram_mb: 512
        weights: "s3://models-bucket/yolo/v8n"
        weights_sha256: "{DIGEST.upper()}"
      hub:
        model_id: org/detector
        vram_gb: 2
        weights: "hf://org/detector@v1.2"
      plain:
        model_id: yolov8s
        vram_gb: 1
"""


def test_weights_fields_import_and_round_trip_through_the_manifest() -> None:
    imported = parse_models_yaml(WITH_WEIGHTS)
    spec = imported.spec
    yolo = spec.option("object_detection", "yolo")
    assert yolo is not None and yolo.weights == "s3://models-bucket/yolo/v8n"
    assert yolo.weights_sha256 == DIGEST  # hex is kept lowercase
    plain = spec.option("object_detection", "plain")
    assert plain is not None and plain.weights is None  # the model id is a hub repository
    assert spec.weights_cache.kind == WeightsCacheKind.SHARED
    assert (spec.weights_cache.claim, spec.weights_cache.size_gb) == ("model-cache", 120)
    assert spec.weights_credentials is not None and spec.weights_credentials.secret == "hub-token"
    assert spec.weights_env["HF_ENDPOINT"] == "http://hub.internal:8080"

    body = catalog_manifest(spec)["spec"]
    assert body["weightsCache"] == {"kind": "shared", "claim": "model-cache", "sizeGb": 120.0}
    assert body["weightsCredentials"] == {"secret": "hub-token"}
    option = body["tasks"]["object_detection"]["options"]["yolo"]
    assert (option["weights"], option["weightsSha256"]) == ("s3://models-bucket/yolo/v8n", DIGEST)
    assert CatalogSpec.model_validate(body) == spec


def test_a_catalog_without_weights_has_a_node_cache_by_default() -> None:
    spec = parse_models_yaml("tasks: {t: {options: {m: {model_id: org/m, vram_gb: 1}}}}").spec
    assert spec.weights_cache.kind == WeightsCacheKind.NODE
    assert spec.weights_cache.path == WEIGHTS_CACHE_PATH
    assert spec.weights_credentials is None and spec.weights_env == {}
    assert "weightsCache" not in catalog_manifest(spec)["spec"]  # defaults stay implicit


def _option(extra: str) -> str:
    return f"tasks: {{t: {{options: {{m: {{model_id: org/m, vram_gb: 1, {extra}}}}}}}}}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            _option('weights: "ftp://host/x"'),
            "models.yaml: task 't', option 'm': field 'weights': weights 'ftp://host/x': "
            "scheme 'ftp' is not supported",
        ),
        (_option('weights: "hf://"'), "option 'm': field 'weights': weights 'hf://'"),
        (_option('weights: "pvc://Bad_Claim/x"'), "'Bad_Claim' is not a PersistentVolumeClaim"),
        (
            _option('weights_sha256: "abc", weights: "https://h/x"'),
            "field 'weights_sha256': weights_sha256 must be 64 hex digits (a sha256), got 'abc'",
        ),
        (
            _option(f'weights_sha256: "{DIGEST}"'),
            "option 'm': weights_sha256 needs weights (the source it checks)",
        ),
        (
            "weights_cache: {kind: shared}\n" + _option('weights: "https://h/x"'),
            "models.yaml: weights_cache: a shared weights cache needs claim",
        ),
        (
            "weights_cache: {kind: node, claim: c}\n" + _option('weights: "https://h/x"'),
            "models.yaml: weights_cache: claim is for kind shared",
        ),
        (
            "weights_cache: {path: /var/../etc}\n" + _option('weights: "https://h/x"'),
            "field 'path': path '/var/../etc' must be an absolute directory without '..'",
        ),
        (
            "weights_cache: {size_gb: 0}\n" + _option('weights: "https://h/x"'),
            "models.yaml: weights_cache: field 'size_gb': Input should be greater than 0",
        ),
        (
            "weights_credentials: {name: x}\n" + _option('weights: "https://h/x"'),
            "models.yaml: weights_credentials: unknown field 'name'",
        ),
        (
            "weights_env: {LD_PRELOAD: /tmp/x.so}\n" + _option('weights: "https://h/x"'),
            "weights_env may set only HF_ENDPOINT",
        ),
    ],
)
def test_bad_weights_settings_are_refused_at_import(text: str, problem: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_models_yaml(text)
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_the_original_models_yaml_still_imports_without_weights() -> None:
    # The original's shipped layout (`models:`), with no weights key anywhere.
    original = {
        "models": {
            "object_detection": {
                "selected": "yolov8n",
                "options": {"yolov8n": {"model_id": "yolov8n", "vram_mb": 512}},
            }
        },
        "inference": {"max_memory_per_model": "auto"},
    }
    spec = parse_models_yaml(yaml.safe_dump(original)).spec
    option = spec.option("object_detection", "yolov8n")
    assert option is not None and option.weights is None
