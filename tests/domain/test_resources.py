"""What the catalog's inference settings mean for a selection: load policy and memory limit."""

from __future__ import annotations

import pytest

from fovea.domain.resources import InferenceSettings, LoadPolicy, SelectionSpec


@pytest.mark.parametrize(
    ("warmup", "own", "expected"),
    [
        (True, None, LoadPolicy.EAGER),
        (False, None, LoadPolicy.ON_DEMAND),
        (False, LoadPolicy.EAGER, LoadPolicy.EAGER),
        (True, LoadPolicy.ON_DEMAND, LoadPolicy.ON_DEMAND),
    ],
)
def test_a_selection_without_a_load_policy_follows_warmup_on_startup(
    warmup: bool, own: LoadPolicy | None, expected: LoadPolicy
) -> None:
    spec = SelectionSpec(task="det", model="m", load_policy=own)
    assert spec.effective_load_policy(InferenceSettings(warmup_on_startup=warmup)) == expected


def test_load_policy_is_optional_on_the_wire() -> None:
    spec = SelectionSpec.model_validate({"task": "det"})
    assert spec.load_policy is None
    assert "loadPolicy" not in spec.model_dump(by_alias=True, exclude_none=True)
    explicit = SelectionSpec.model_validate({"task": "det", "loadPolicy": "onDemand"})
    assert explicit.load_policy == LoadPolicy.ON_DEMAND


@pytest.mark.parametrize(("limit", "gib"), [("auto", None), (24, 24.0), ("22.5", 22.5), (0.5, 0.5)])
def test_memory_limit_in_gib_or_none_for_auto(limit: object, gib: float | None) -> None:
    settings = InferenceSettings.model_validate({"maxMemoryPerModel": limit})
    assert settings.memory_limit_gib == gib
