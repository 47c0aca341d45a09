"""The ModelCatalog and ModelSelection CustomResourceDefinitions, generated.

The pydantic models of `fovea.domain.resources` are the one source: their
JSON schema is translated into the structural OpenAPI v3 schema Kubernetes
wants. No `$ref` (inlined), no `anyOf` with null (an optional field is
simply not required: Kubernetes prunes nulls), exclusive bounds in OpenAPI
3.0 form, no titles. What JSON schema cannot say is added here, by model
class: CEL rules (`x-kubernetes-validations`), list types, and the one field
that is a number or a word (`maxMemoryPerModel`).

`fovea-models crds --write` writes the result to `manifests/crd/`; a test
checks the committed files equal what this module generates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from fovea.domain import constants as c
from fovea.domain.resources import (
    MODEL_DIR,
    NAME_PATTERN,
    PRIORITY_MAX,
    PRIORITY_MIN,
    WEIGHTS_ENV_NAMES,
    CatalogSpec,
    CatalogStatus,
    SelectionSpec,
    SelectionStatus,
)

Schema = dict[str, Any]
DECIMAL_PATTERN = "^[0-9]+([.][0-9]+)?$"

CATEGORY = "fovea"
CATALOG_SHORT_NAMES = ["mcat"]
SELECTION_SHORT_NAMES = ["msel"]
HEADER = "# Generated from fovea.domain.resources by `fovea-models crds --write`: do not edit.\n"

# CEL rules per model class (by class name, as pydantic titles its schemas).
RULES: dict[str, list[dict[str, str]]] = {
    "ModelOption": [
        # model_id_problem (domain/resources.py), rule by rule.
        {
            "rule": "!self.modelId.startsWith('-')",
            "message": "modelId must not start with '-' (an engine would read it as a flag)",
            "fieldPath": ".modelId",
        },
        {
            "rule": "!self.modelId.matches('(^|/)[.][.](/|$)')",
            "message": "modelId must not contain a '..' path segment",
            "fieldPath": ".modelId",
        },
        {
            "rule": "!self.modelId.startsWith('/') || self.modelId.startsWith('"
            + MODEL_DIR
            + "/')",
            "message": f"modelId: an absolute path must be under {MODEL_DIR}/",
            "fieldPath": ".modelId",
        },
        {
            "rule": "!(has(self.vramGb) && has(self.vramMb))",
            "message": "give either vramGb or vramMb, not both",
        },
        {
            "rule": "has(self.vramGb) || has(self.vramMb) || self.framework == 'external_api'",
            "message": "needs vramGb or vramMb (only framework external_api may have neither)",
        },
        {
            "rule": "!has(self.weightsSha256) || has(self.weights)",
            "message": "weightsSha256 needs weights (the source it checks)",
        },
    ],
    "WeightsCache": [
        {
            "rule": "self.kind != 'shared' || has(self.claim)",
            "message": "a shared weights cache needs claim (a ReadWriteMany PVC)",
        },
        {
            "rule": "self.kind != 'node' || !has(self.claim)",
            "message": "claim is for kind shared; a node cache uses path",
        },
        {
            "rule": "!self.path.matches('(^|/)[.][.](/|$)')",
            "message": "path must not contain a '..' segment",
            "fieldPath": ".path",
        },
    ],
    "CatalogSpec": [
        {
            "rule": "!has(self.weightsEnv) || self.weightsEnv.all(k, k in ["
            + ", ".join(f"'{n}'" for n in WEIGHTS_ENV_NAMES)
            + "])",
            "message": "weightsEnv may set only " + ", ".join(WEIGHTS_ENV_NAMES),
            "fieldPath": ".weightsEnv",
        },
    ],
    "InferenceSettings": [
        {
            "rule": "self.defaultBatchSize <= self.maxBatchSize",
            "message": "defaultBatchSize must not exceed maxBatchSize",
        },
        {
            "rule": "!has(self.maxMemoryPerModel) || (type(self.maxMemoryPerModel) == string"
            " ? self.maxMemoryPerModel == 'auto' || (self.maxMemoryPerModel.matches('"
            + DECIMAL_PATTERN
            + "') && double(self.maxMemoryPerModel) > 0.0)"
            " : self.maxMemoryPerModel > 0)",
            "message": "maxMemoryPerModel must be a positive number of GiB or 'auto'",
            "fieldPath": ".maxMemoryPerModel",
        },
    ],
    "SelectionSpec": [
        {
            "rule": "self.task == oldSelf.task",
            "message": "task is immutable: create another ModelSelection for another task",
        },
        {
            "rule": f"self.priority >= {PRIORITY_MIN} && self.priority <= {PRIORITY_MAX}",
            "message": f"priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}",
            "fieldPath": ".priority",
        },
    ],
}

# Schemas JSON schema cannot express structurally, by (class, field).
FIELD_OVERRIDES: dict[tuple[str, str], Schema] = {
    # float | "auto": a structural schema has no number-or-string type, only
    # int-or-string, so a fraction is stored as a decimal string ("22.5"; the
    # catalog import writes it so, pydantic reads it back as a number). The CEL
    # rule above checks the value.
    ("InferenceSettings", "maxMemoryPerModel"): {
        "description": "GiB one model may use (a whole number, or a decimal string such as "
        '"22.5"), or auto',
        "x-kubernetes-int-or-string": True,
        "default": "auto",
    },
}
# Maps whose keys are names: a CEL rule checks each key (pydantic does the same).
NAME_KEYED_MAPS: dict[tuple[str, str], str] = {
    ("CatalogSpec", "tasks"): "task",
    ("TaskSpec", "options"): "option",
}
# Lists that are maps keyed by a field (server-side apply merges them by key,
# and the API server refuses duplicate keys).
LIST_MAP_KEYS: dict[tuple[str, str], str] = {
    ("CatalogSpec", "gpuOverrides"): "node",
    ("SelectionStatus", "conditions"): "type",
    ("CatalogStatus", "conditions"): "type",
}

_KEEP = (
    "type",
    "description",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "format",
)


def catalog_crd() -> Schema:
    """The ModelCatalog CRD."""
    return _crd(
        kind=c.CATALOG_KIND,
        plural=c.CATALOG_PLURAL,
        short_names=CATALOG_SHORT_NAMES,
        description="The models of each task and how they are loaded: a models.yaml as a resource.",
        spec=CatalogSpec,
        status=CatalogStatus,
        columns=[
            _column(
                "Accepted",
                "string",
                '.status.conditions[?(@.type=="Accepted")].status',
                "Whether the spec parses (status.problems says why not)",
            ),
            _column(
                "Threshold",
                "number",
                ".spec.inference.offloadThreshold",
                "Fraction of each GPU's memory models may fill",
            ),
            _column("Sharing", "string", ".spec.sharingMode", "How model pods share a GPU"),
            _column("Age", "date", ".metadata.creationTimestamp"),
        ],
    )


def selection_crd() -> Schema:
    """The ModelSelection CRD (with the status subresource)."""
    return _crd(
        kind=c.SELECTION_KIND,
        plural=c.SELECTION_PLURAL,
        short_names=SELECTION_SHORT_NAMES,
        description="The model a task uses, and where and how it runs (status).",
        spec=SelectionSpec,
        status=SelectionStatus,
        columns=[
            _column("Task", "string", ".spec.task"),
            _column("Model", "string", ".spec.model"),
            _column("Phase", "string", ".status.phase"),
            _column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
            # Strings with their unit: kubectl prints a number column bare (7.2e-05).
            _column(
                "Declared",
                "string",
                ".status.declaredMemory",
                "The catalog's memory figure for the model (GB = 1024^3 bytes)",
            ),
            _column(
                "Measured",
                "string",
                ".status.measuredMemory",
                "Memory the model measured itself using (GB = 1024^3 bytes)",
            ),
            _column("Device", "string", ".status.device"),
            _column("Node", "string", ".status.node"),
            _column(
                "GPU",
                "string",
                ".status.allocatedDevice.uuid",
                "dra mode: the GPU allocated to the pod's ResourceClaim (its uuid)",
            ),
            _column("Priority", "integer", ".spec.priority", priority=1),
            _column(
                "Weights",
                "string",
                ".status.weights.phase",
                "Fetching, Cached or Failed: the weights of the pod it wants",
                priority=1,
            ),
            _column("Message", "string", ".status.message", priority=1),
            _column("Age", "date", ".metadata.creationTimestamp"),
        ],
    )


CRDS: dict[str, Callable[[], Schema]] = {
    "modelcatalogs.yaml": catalog_crd,
    "modelselections.yaml": selection_crd,
}


def render(crd: Mapping[str, Any]) -> str:
    """A CRD as the YAML committed under manifests/crd/."""
    return HEADER + yaml.safe_dump(dict(crd), sort_keys=False, default_flow_style=False, width=100)


def rendered_files() -> dict[str, str]:
    """File name -> content, for every CRD."""
    return {name: render(build()) for name, build in CRDS.items()}


def structural_schema(model: type[BaseModel], *, defaults: bool) -> Schema:
    """The structural OpenAPI v3 schema of a pydantic model (camelCase field names)."""
    source = model.model_json_schema(by_alias=True, mode="validation")
    return _Translator(source.get("$defs", {}), defaults).node(source, owner=None, field=None)


# --- translation ----------------------------------------------------------------


class _Translator:
    def __init__(self, defs: Mapping[str, Schema], defaults: bool) -> None:
        self.defs, self.defaults = defs, defaults

    def node(self, schema: Mapping[str, Any], owner: str | None, field: str | None) -> Schema:
        override = FIELD_OVERRIDES.get((owner or "", field or ""))
        if override is not None:
            return dict(override)
        schema = self._resolve(schema)
        out: Schema = {k: copy.deepcopy(schema[k]) for k in _KEEP if k in schema}
        if "const" in schema:
            out["enum"] = [schema["const"]]
        for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if bound in schema:  # JSON schema 2020 number -> OpenAPI 3.0 boolean
                out[limit] = schema[bound]
                out[bound] = True
        if self.defaults and schema.get("default") is not None and out.get("type") != "object":
            out["default"] = schema["default"]
        title = schema.get("title")
        if out.get("type") == "object":
            self._object(schema, out, str(title) if title else None)
        elif out.get("type") == "array":
            out["items"] = self.node(schema["items"], None, None)
            key = LIST_MAP_KEYS.get((owner or "", field or ""))
            if key:
                out["x-kubernetes-list-type"] = "map"
                out["x-kubernetes-list-map-keys"] = [key]
        if (owner, field) in {(o, f) for o, f in NAME_KEYED_MAPS}:
            what = NAME_KEYED_MAPS[(owner or "", field or "")]
            out.setdefault("x-kubernetes-validations", []).append(
                {
                    "rule": f"self.all(k, k.matches('{NAME_PATTERN}'))",
                    "message": f"each {what} name must be 1-63 letters, digits, '-', '_' or '.', "
                    "starting and ending with a letter or digit",
                }
            )
        if "type" not in out:
            raise ValueError(f"{owner}.{field}: no structural type for {dict(schema)}")
        return out

    def _object(self, schema: Mapping[str, Any], out: Schema, title: str | None) -> None:
        properties = schema.get("properties")
        if properties:
            out["properties"] = {
                name: self.node(sub, title, name) for name, sub in properties.items()
            }
            if schema.get("required"):
                out["required"] = list(schema["required"])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            out["additionalProperties"] = self.node(extra, None, None)
        elif extra is True or (not properties and extra is None):
            out["x-kubernetes-preserve-unknown-fields"] = True  # free-form: say so
        if title in RULES:
            out["x-kubernetes-validations"] = [dict(r) for r in RULES[title]]

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """Inline $ref and drop the null branch of Optional, keeping outer annotations."""
        outer = {k: v for k, v in schema.items() if k not in ("$ref", "anyOf", "allOf")}
        if "$ref" in schema:
            inner = self.defs[schema["$ref"].split("/")[-1]]
            return {**self._resolve(inner), **outer}
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return {**self._resolve(schema["allOf"][0]), **outer}
        if "anyOf" in schema:
            branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
            if len(branches) != 1:
                raise ValueError(f"a union is not structural: {dict(schema)}; add an override")
            return {**self._resolve(branches[0]), **outer}
        return schema


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    description: str,
    spec: type[BaseModel],
    status: type[BaseModel] | None,
    columns: list[Schema],
) -> Schema:
    properties: Schema = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": structural_schema(spec, defaults=True),
    }
    if status is not None:
        properties["status"] = structural_schema(status, defaults=False)
    version: Schema = {
        "name": c.VERSION,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "description": description,
                "required": ["spec"],
                "properties": properties,
            }
        },
        "additionalPrinterColumns": columns,
    }
    if status is not None:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{c.GROUP}",
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY},
        },
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "versions": [version],
        },
    }


def _column(
    name: str, type_: str, path: str, description: str | None = None, priority: int = 0
) -> Schema:
    column: Schema = {"name": name, "type": type_, "jsonPath": path}
    if description:
        column["description"] = description
    if priority:
        column["priority"] = priority
    return column
