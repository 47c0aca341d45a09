"""Lenient reading of resources written by other processes.

The API must keep answering when a newer operator or model pod writes a
status field this version does not know: unknown or malformed fields are
dropped (and logged), never allowed to hide the whole resource.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# A status has few fields; each pass drops at least one bad one.
_MAX_PASSES = 32


def parse_lenient(model: type[M], data: dict[str, Any]) -> M:
    """Validate `data` as `model`, dropping the fields that fail until it validates.

    Raises ValidationError only when even the remaining fields cannot form a
    valid object (for example a required field is itself malformed).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first_error = error = exc
    work = copy.deepcopy(data)
    for _ in range(_MAX_PASSES):
        dropped = False
        for detail in error.errors():
            dropped |= _drop(work, detail["loc"])
        if not dropped:
            raise error
        try:
            parsed = model.model_validate(work)
        except ValidationError as again:
            error = again
            continue
        log.warning("ignored unreadable fields of %s: %s", model.__name__, first_error)
        return parsed
    raise error


def _drop(data: Any, loc: tuple[int | str, ...]) -> bool:
    """Delete the value at `loc`, or failing that its nearest existing ancestor.

    A missing required field inside an optional object (say `runtime.state`)
    drops that object; an error below a scalar drops the key holding it.
    """
    for depth in range(len(loc), 0, -1):
        parent = _walk(data, loc[: depth - 1])
        if parent is not None and _delete(parent, loc[depth - 1]):
            return True
    return False


def _walk(data: Any, path: tuple[int | str, ...]) -> Any:
    node = data
    for key in path:
        node = _child(node, key)
        if node is None:
            return None
    return node


def _child(node: Any, key: int | str) -> Any:
    if isinstance(node, dict) and key in node and isinstance(node[key], dict | list):
        return node[key]
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        item = node[key]
        return item if isinstance(item, dict | list) else None
    return None


def _delete(node: Any, key: int | str) -> bool:
    if isinstance(node, dict) and key in node:
        del node[key]
        return True
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        del node[key]
        return True
    return False
