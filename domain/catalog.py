"""Import a `models.yaml` as a ModelCatalog, and render it as manifests.

Both layouts of the original model service are accepted: tasks under a
top-level `tasks:` (as its documentation shows) or `models:` (as its shipped
file has), each task with `selected` (a name, null, or missing) and
`options`; each option with `vram_gb` or `vram_mb` (never both; neither only
for `framework: external_api`), and an `inference:` block whose
`max_memory_per_model` is a number or `auto`. Keys of this project may be
added at the top: `sharing_mode`, `gpu_overrides`, and for weights
(docs/weights.md) `weights_cache`, `weights_credentials` and `weights_env`;
and per option `weights` (a URI) and `weights_sha256`.

Every problem is a `CatalogError` whose message names the file, the task and
the option, one line per problem, e.g.

    models.yaml: task 'object_detection', option 'yolov8n': give either vram_gb or vram_mb, not both

Pure: the caller reads the file and writes the output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fovea.domain import constants as c
from fovea.domain.resources import (
    NAME_PATTERN,
    CatalogSpec,
    InferenceSettings,
    ModelOption,
    SelectionSpec,
    TaskSpec,
    WeightsCache,
    WeightsCredentials,
    selection_name,
)

TASK_KEYS = ("selected", "options", "description")
TOP_LEVEL_KEYS = (
    "tasks",
    "models",
    "inference",
    "sharing_mode",
    "gpu_overrides",
    "weights_cache",
    "weights_credentials",
    "weights_env",
)
# metadata.name of a ModelCatalog (DNS-1123 subdomain) and a namespace (DNS-1123 label).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME = re.compile(NAME_PATTERN)
_M = TypeVar("_M", bound=BaseModel)


class CatalogError(ValueError):
    """A catalog that cannot be imported; `problems` has one full sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ImportedCatalog:
    """A parsed `models.yaml`: the catalog, and the model each task had selected."""

    spec: CatalogSpec
    selected: dict[str, str | None] = field(default_factory=dict)  # in the file's task order


def parse_models_yaml(text: str, source: str = "models.yaml") -> ImportedCatalog:
    """Parse a `models.yaml` (either layout); raise CatalogError listing every problem."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise CatalogError([f"{source}: not valid YAML: {_yaml_problem(exc)}"]) from exc
    return parse_models(data, source)


def parse_models(data: object, source: str = "models.yaml") -> ImportedCatalog:
    """Like `parse_models_yaml`, from already-loaded YAML data."""
    problems = _Problems(source)
    if not isinstance(data, Mapping):
        problems.add(
            [], f"must be a mapping with 'tasks' (or 'models') and 'inference', got {_kind(data)}"
        )
        problems.raise_if_any()
    assert isinstance(data, Mapping)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.add(
                [], f"unknown top-level key {key!r} (expected one of {', '.join(TOP_LEVEL_KEYS)})"
            )
    tasks_key = _tasks_key(data, problems)
    raw_tasks = data.get(tasks_key) if tasks_key else None
    tasks: dict[str, TaskSpec] = {}
    selected: dict[str, str | None] = {}
    if tasks_key and not isinstance(raw_tasks, Mapping):
        problems.add([], f"'{tasks_key}' must map task names to tasks, got {_kind(raw_tasks)}")
    elif isinstance(raw_tasks, Mapping):
        if not raw_tasks:
            problems.add([], f"'{tasks_key}' has no tasks")
        for task, raw in raw_tasks.items():
            parsed = _task(task, raw, problems)
            if parsed is not None:
                tasks[str(task)], selected[str(task)] = parsed
    _check_selection_names(list(tasks), problems)
    fields: dict[str, Any] = {"tasks": tasks}
    blocks: tuple[tuple[str, type[BaseModel]], ...] = (
        ("inference", InferenceSettings),
        ("weights_cache", WeightsCache),
        ("weights_credentials", WeightsCredentials),
    )
    for key, model in blocks:
        if key in data:
            parsed_block = _validate(model, data[key], [], problems, prefix=key)
            if parsed_block is not None:
                fields[key] = parsed_block
    if "sharing_mode" in data:
        fields["sharing_mode"] = data["sharing_mode"]
    if "gpu_overrides" in data:
        fields["gpu_overrides"] = data["gpu_overrides"]
    if "weights_env" in data:
        fields["weights_env"] = data["weights_env"]
    problems.raise_if_any()
    try:
        spec = CatalogSpec(**fields)
    except ValidationError as exc:
        for err in exc.errors():
            problems.add([], _pydantic_problem(err, CatalogSpec))
        problems.raise_if_any()
        raise  # unreachable: there was at least one error
    return ImportedCatalog(spec, selected)


def catalog_manifest(
    spec: CatalogSpec, name: str = c.DEFAULT_CATALOG_NAME, namespace: str | None = None
) -> dict[str, Any]:
    """The ModelCatalog object, with only the fields the source set (defaults stay implicit).

    A fractional `maxMemoryPerModel` is written as a decimal string ("22.5"):
    the CRD stores that field as int-or-string (see `fovea.domain.crds`).
    """
    body = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    inference = body.get("inference") or {}
    limit = inference.get("maxMemoryPerModel")
    if isinstance(limit, float) and not limit.is_integer():
        inference["maxMemoryPerModel"] = format(Decimal(repr(limit)), "f")
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.CATALOG_KIND,
        "metadata": _metadata(name, namespace),
        "spec": body,
    }


def selection_manifests(
    imported: ImportedCatalog, catalog: str = c.DEFAULT_CATALOG_NAME, namespace: str | None = None
) -> list[dict[str, Any]]:
    """One ModelSelection per task whose `selected` is set, named `selection_name(task)`."""
    out = []
    for task, model in imported.selected.items():
        if model is None:
            continue
        spec = SelectionSpec(task=task, model=model, catalog=catalog)
        out.append(
            {
                "apiVersion": c.API_VERSION,
                "kind": c.SELECTION_KIND,
                "metadata": _metadata(selection_name(task), namespace),
                "spec": spec.model_dump(
                    mode="json", by_alias=True, include={"task", "model", "catalog"}
                ),
            }
        )
    return out


def render_manifests(
    imported: ImportedCatalog,
    *,
    name: str = c.DEFAULT_CATALOG_NAME,
    namespace: str | None = None,
    selections: bool = True,
    header: str | None = None,
) -> str:
    """A multi-document YAML: the ModelCatalog, then a ModelSelection per selected task.

    Raises CatalogError for a name or namespace Kubernetes would refuse.
    """
    problems = []
    if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        problems.append(
            f"catalog name {name!r} is not a valid Kubernetes name "
            "(lowercase letters, digits, '-' and '.')"
        )
    if namespace is not None and not _DNS_LABEL.match(namespace):
        problems.append(
            f"namespace {namespace!r} is not a valid Kubernetes namespace "
            "(lowercase letters, digits and '-', at most 63)"
        )
    if problems:
        raise CatalogError(problems)
    docs = [catalog_manifest(imported.spec, name, namespace)]
    if selections:
        docs.extend(selection_manifests(imported, name, namespace))
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120)
    if header:
        lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
        return f"{lines}---\n{body}"
    return body


# --- parsing helpers -----------------------------------------------------------


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: list[str], problem: str) -> None:
        place = f"{self.source}: {', '.join(where)}" if where else self.source
        self.items.append(f"{place}: {problem}")

    def raise_if_any(self) -> None:
        if self.items:
            raise CatalogError(self.items)


def _tasks_key(data: Mapping[str, Any], problems: _Problems) -> str | None:
    present = [k for k in ("tasks", "models") if k in data]
    if len(present) == 2:
        problems.add([], "has both 'tasks' and 'models': use one of them for the tasks")
        return None
    if not present:
        problems.add([], "has no 'tasks' (or 'models') mapping of tasks")
        return None
    return present[0]


def _task(task: object, raw: object, problems: _Problems) -> tuple[TaskSpec, str | None] | None:
    where = [f"task {task!r}"]
    ok = True
    if not isinstance(task, str) or not _NAME.match(task):
        problems.add(
            where,
            "a task name must be 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit",
        )
        ok = False
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.add(where, f"must be a mapping with 'selected' and 'options', got {_kind(raw)}")
        return None
    for key in raw:
        if key not in TASK_KEYS:
            problems.add(where, f"unknown key {key!r} (expected {', '.join(TASK_KEYS)})")
            ok = False
    raw_options = raw.get("options")
    options: dict[str, ModelOption] = {}
    if not isinstance(raw_options, Mapping) or not raw_options:
        problems.add(
            where, f"needs 'options': a mapping of option names to models, got {_kind(raw_options)}"
        )
        ok = False
    else:
        for name, option in raw_options.items():
            opt_where = [*where, f"option {name!r}"]
            if not isinstance(name, str) or not _NAME.match(name):
                problems.add(
                    opt_where,
                    "an option name must be 1-63 letters, digits, '-', '_' "
                    "or '.', starting and ending with a letter or digit",
                )
                ok = False
                continue
            parsed = _validate(ModelOption, option, opt_where, problems)
            if parsed is None:
                ok = False
            else:
                options[name] = parsed
    selected = raw.get("selected")
    if selected is not None and not isinstance(selected, str):
        problems.add(where, f"'selected' must be an option name or null, got {selected!r}")
        ok = False
    elif (
        isinstance(selected, str)
        and isinstance(raw_options, Mapping)
        and selected not in raw_options
    ):
        known = ", ".join(str(k) for k in raw_options)
        problems.add(where, f"selected model {selected!r} is not one of its options ({known})")
        ok = False
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        problems.add(where, f"'description' must be text, got {_kind(description)}")
        ok = False
    if not ok:
        return None
    fields: dict[str, Any] = {"options": options}
    if description is not None:
        fields["description"] = description
    return TaskSpec(**fields), selected


def _check_selection_names(tasks: list[str], problems: _Problems) -> None:
    seen: dict[str, str] = {}
    for task in tasks:
        name = selection_name(task)
        if name in seen:
            problems.add(
                [],
                f"tasks {seen[name]!r} and {task!r} would share the ModelSelection name {name!r} "
                "(task names may not differ only by case, '_', '-' or '.'): rename one of them",
            )
        seen.setdefault(name, task)


def _validate(
    model: type[_M], raw: object, where: list[str], problems: _Problems, prefix: str | None = None
) -> _M | None:
    here = [*where, prefix] if prefix else where
    if not isinstance(raw, Mapping):
        problems.add(here, f"must be a mapping of fields, got {_kind(raw)}")
        return None
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        for err in exc.errors():
            problems.add(here, _pydantic_problem(err, model))
        return None


def _pydantic_problem(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    """One pydantic error as a sentence using the models.yaml (snake_case) field names."""
    names = {info.alias or name: name for name, info in model.model_fields.items()}
    loc = [names.get(str(p), str(p)) if i == 0 else str(p) for i, p in enumerate(err["loc"])]
    # Union members (float, literal['auto']) show up in the location: name the field only.
    loc = [p for p in loc if not p.startswith(("float", "literal[", "function-"))]
    message = str(err["msg"])
    if err["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown field {'.'.join(loc)!r}"
    if not loc:
        return message
    got = err.get("input")
    suffix = "" if err["type"] in ("missing", "value_error") else f" (got {got!r})"
    return f"field {'.'.join(loc)!r}: {message}{suffix}"


def _metadata(name: str, namespace: str | None) -> dict[str, str]:
    meta = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str | int | float | bool | None):
            continue  # an odd key (a list): construct_mapping reports it
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)

__all__ = [
    "CatalogError",
    "ImportedCatalog",
    "catalog_manifest",
    "parse_models",
    "parse_models_yaml",
    "render_manifests",
    "selection_manifests",
]
