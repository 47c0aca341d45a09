"""Resolution: a selection and its catalog, to the option it runs or the problem it has.

Parses the catalogs, resolves each selection to its model option (or a `Problem`:
catalog missing, image not allowed, over its memory limit, waiting for demand), and
unloads idle on-demand models (keepAlive).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from pydantic import ValidationError

from fovea.domain import keepalive
from fovea.domain.budget import memory_limit_refusal
from fovea.domain.conditions import Reason
from fovea.domain.messages import say
from fovea.domain.resources import CatalogSpec, LoadPolicy, Phase
from fovea.operator.decisions import Catalog, Key, Problem, Resolved, Selection
from fovea.operator.images import image_refusal


def parse_catalogs(
    raw: Mapping[Key, Catalog],
) -> tuple[dict[Key, CatalogSpec], dict[Key, list[str]]]:
    parsed: dict[Key, CatalogSpec] = {}
    errors: dict[Key, list[str]] = {}
    for key, cat in raw.items():
        try:
            parsed[key] = CatalogSpec.model_validate(cat.spec)
        except ValidationError as exc:
            errors[key] = _all_errors(exc)
    return parsed, errors


def resolve(
    sel: Selection,
    catalogs: Mapping[Key, CatalogSpec],
    catalog_errors: Mapping[Key, list[str]],
    allowed_images: Sequence[str],
) -> Resolved:
    if sel.spec is None:
        why = sel.spec_error or "invalid"
        return Resolved(sel, None, None, Problem(Phase.FAILED, Reason.INVALID_SPEC, why))
    spec = sel.spec
    ckey = (sel.namespace, spec.catalog)
    catalog = catalogs.get(ckey)
    if catalog is None:
        errors = catalog_errors.get(ckey)
        if errors:
            msg = say(Reason.CATALOG_INVALID, catalog=spec.catalog, why=errors[0])
            return Resolved(sel, None, None, Problem(Phase.PENDING, Reason.CATALOG_INVALID, msg))
        msg = say(Reason.CATALOG_NOT_FOUND, catalog=spec.catalog, namespace=sel.namespace)
        return Resolved(sel, None, None, Problem(Phase.PENDING, Reason.CATALOG_NOT_FOUND, msg))
    if spec.task not in catalog.tasks:
        msg = say(Reason.UNKNOWN_TASK, task=spec.task, catalog=spec.catalog)
        return Resolved(sel, None, catalog, Problem(Phase.FAILED, Reason.UNKNOWN_TASK, msg))
    if not spec.model:
        msg = say(Reason.NO_MODEL_SELECTED)
        return Resolved(
            sel, None, catalog, Problem(Phase.UNSELECTED, Reason.NO_MODEL_SELECTED, msg)
        )
    option = catalog.option(spec.task, spec.model)
    if option is None:
        msg = say(Reason.MODEL_NOT_FOUND, model=spec.model, task=spec.task)
        return Resolved(sel, None, catalog, Problem(Phase.FAILED, Reason.MODEL_NOT_FOUND, msg))
    if option.is_external:  # its key is the caller's (docs/security.md): no pod, no Secret read
        msg = say(Reason.EXTERNAL_API, model_id=option.model_id)
        return Resolved(sel, option, catalog, Problem(Phase.READY, Reason.EXTERNAL_API, msg))
    refusal = image_refusal(option.image, allowed_images) if option.image else None
    if refusal is not None:
        problem = Problem(Phase.FAILED, Reason.IMAGE_NOT_ALLOWED, refusal)
        return Resolved(sel, option, catalog, problem)
    refusal = memory_limit_refusal(spec.model, option, catalog.inference)
    if refusal is not None:
        problem = Problem(Phase.FAILED, Reason.EXCEEDS_MAX_MEMORY, refusal)
        return Resolved(sel, option, catalog, problem)
    policy = spec.effective_load_policy(catalog.inference)
    if policy == LoadPolicy.ON_DEMAND and not spec.wanted:
        why = " (the catalog's warmupOnStartup is false)" if spec.load_policy is None else ""
        msg = say(Reason.WAITING_FOR_DEMAND, why=why)
        problem = Problem(Phase.PENDING, Reason.WAITING_FOR_DEMAND, msg)
        return Resolved(sel, option, catalog, problem)
    return Resolved(sel, option, catalog, None)


def unload_idle(r: Resolved, now: datetime) -> Resolved:
    """An on-demand model unused for its keepAlive is unloaded (`fovea.domain.keepalive`)."""
    if r.problem is not None or r.option is None or r.sel.spec is None or r.catalog is None:
        return r
    spec, inference = r.sel.spec, r.catalog.inference
    idle = keepalive.for_selection(spec, r.option, inference, r.sel.status, now.timestamp())
    if idle is None:
        return r
    problem = Problem(Phase.PENDING, Reason.IDLE_UNLOADED, idle.message, idle.stamp)
    return replace(r, problem=problem)


def needs_compute(r: Resolved) -> bool:
    return r.problem is None and r.option is not None


def key_str(sel: Selection) -> str:
    return f"{sel.namespace}/{sel.name}"


def _all_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        out.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return out
