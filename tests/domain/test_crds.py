"""The generated CRDs: structural, complete, and equal to the committed files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from fovea.domain import crds
from fovea.domain.resources import CatalogSpec, ModelOption, SelectionSpec, SelectionStatus

CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crd"
# Keys allowed in a structural schema node, as this generator uses them.
ALLOWED = {
    "type", "description", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "minProperties", "maxProperties",
    "format", "default", "properties", "required", "items", "additionalProperties",
    "x-kubernetes-validations", "x-kubernetes-int-or-string", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields",
}  # fmt: skip


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")


def version_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("name", sorted(crds.CRDS))
def test_committed_crds_equal_the_generated_ones(name: str) -> None:
    committed = (CRD_DIR / name).read_text()
    assert committed == crds.rendered_files()[name], (
        f"manifests/crd/{name} is stale: run `fovea-models crds --write`"
    )


@pytest.mark.parametrize("build", [crds.catalog_crd, crds.selection_crd])
def test_schemas_are_structural(build: Any) -> None:
    for path, node in nodes(version_schema(build())):
        assert set(node) <= ALLOWED, (path, set(node) - ALLOWED)
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), path
        if node.get("type") == "object" and "properties" in node:
            assert "additionalProperties" not in node, path
        if node.get("exclusiveMinimum") is not None:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_every_pydantic_field_is_in_the_schema() -> None:
    def aliases(model: type[BaseModel]) -> set[str]:
        return {info.alias or name for name, info in model.model_fields.items()}

    catalog = version_schema(crds.catalog_crd())["properties"]["spec"]
    assert set(catalog["properties"]) == aliases(CatalogSpec)
    option = catalog["properties"]["tasks"]["additionalProperties"]["properties"]["options"]
    assert set(option["additionalProperties"]["properties"]) == aliases(ModelOption)
    selection = version_schema(crds.selection_crd())["properties"]
    assert set(selection["spec"]["properties"]) == aliases(SelectionSpec)
    assert set(selection["status"]["properties"]) == aliases(SelectionStatus)
    assert selection["spec"]["required"] == ["task"]


def test_validation_rules_and_bounds() -> None:
    catalog = version_schema(crds.catalog_crd())["properties"]["spec"]
    tasks = catalog["properties"]["tasks"]
    options = tasks["additionalProperties"]["properties"]["options"]
    option = options["additionalProperties"]
    assert [r["message"] for r in option["x-kubernetes-validations"]] == [
        "modelId must not start with '-' (an engine would read it as a flag)",
        "modelId must not contain a '..' path segment",
        "modelId: an absolute path must be under /models/",
        "give either vramGb or vramMb, not both",
        "needs vramGb or vramMb (only framework external_api may have neither)",
        "weightsSha256 needs weights (the source it checks)",
    ]
    assert tasks["maxProperties"] == options["maxProperties"] == 64  # keeps CEL cost bounded
    assert "k.matches(" in tasks["x-kubernetes-validations"][0]["rule"]
    assert catalog["properties"]["gpuOverrides"]["x-kubernetes-list-map-keys"] == ["node"]
    threshold = catalog["properties"]["inference"]["properties"]["offloadThreshold"]
    assert (threshold["minimum"], threshold["exclusiveMinimum"], threshold["maximum"]) == (
        0,
        True,
        1,
    )
    limit = catalog["properties"]["inference"]["properties"]["maxMemoryPerModel"]
    assert limit["x-kubernetes-int-or-string"] is True and limit["default"] == "auto"
    spec = version_schema(crds.selection_crd())["properties"]["spec"]
    assert (
        spec["properties"]["priority"]["minimum"],
        spec["properties"]["priority"]["maximum"],
    ) == (
        0,
        1000,
    )
    assert spec["properties"]["devicePolicy"]["enum"] == ["auto", "gpu", "cpu"]
    rules = {r["rule"] for r in spec["x-kubernetes-validations"]}
    assert "self.task == oldSelf.task" in rules
    assert "self.priority >= 0 && self.priority <= 1000" in rules
    status = version_schema(crds.selection_crd())["properties"]["status"]
    assert status["properties"]["conditions"]["x-kubernetes-list-type"] == "map"
    assert not any(
        n.get("x-kubernetes-preserve-unknown-fields") for _, n in nodes(status)
    )  # the status is fully typed


def test_names_columns_and_subresources() -> None:
    selection = crds.selection_crd()["spec"]
    assert selection["names"]["shortNames"] == ["msel"]
    assert selection["names"]["categories"] == ["fovea"]
    assert selection["scope"] == "Namespaced"
    version = selection["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == [
        "Task", "Model", "Phase", "Ready", "Declared", "Measured", "Device", "Node", "GPU", "Age"
    ]  # fmt: skip
    catalog = crds.catalog_crd()["spec"]
    assert catalog["names"]["shortNames"] == ["mcat"]
    assert catalog["versions"][0]["subresources"] == {"status": {}}
    columns = [c["name"] for c in catalog["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Accepted", "Threshold", "Sharing", "Age"]
    status = version_schema(crds.catalog_crd())["properties"]["status"]
    assert status["properties"]["conditions"]["x-kubernetes-list-type"] == "map"
    assert crds.catalog_crd()["metadata"]["name"] == "modelcatalogs.fovea.dev"


def test_rendered_yaml_round_trips() -> None:
    for name, text in crds.rendered_files().items():
        assert text.startswith("# Generated from fovea.domain.resources")
        assert yaml.safe_load(text) == crds.CRDS[name]()


def test_an_untranslatable_union_is_an_error_not_a_silent_schema() -> None:
    class Odd(BaseModel):
        value: int | str

    with pytest.raises(ValueError, match="a union is not structural"):
        crds.structural_schema(Odd, defaults=False)
