"""Warm switches' pure decisions (fovea.domain.warm)."""

from __future__ import annotations

import pytest

from fovea.domain.resources import ModelOption, SharingMode
from fovea.domain.warm import (
    Parked,
    WarmGroup,
    adoptable,
    park_budget_bytes,
    parse_warm_options,
    to_evict,
    warm_group,
)

GIB = 1024**3


def _opt(framework: str = "ultralytics", **extra: object) -> ModelOption:
    body = {"modelId": "m", "framework": framework, "vramMb": 256, **extra}
    return ModelOption.model_validate(body)


OPTIONS = {
    "n": _opt(cpuMemoryGb=1.0, vramMb=512),
    "s": _opt(cpuMemoryGb=1.5, vramMb=1536),
    "dino": _opt("transformers", vramMb=2048),
    "fetched": _opt(weights="hf://org/name"),
    "other-image": _opt(image="ghcr.io/fovea-models/model-pod-gpu:0.1.0"),
}


def _group(model: str, sharing: SharingMode | None = SharingMode.TIME_SLICED) -> object:
    return warm_group(OPTIONS, model, sharing=sharing, default_memory_gib=2.0)


def test_a_group_is_the_options_of_one_framework_and_image_that_load_in_process() -> None:
    group = _group("n")
    assert isinstance(group, WarmGroup) and group.names == ("n", "s")
    assert group.memory_gb == 1.5  # the pod requests the largest member's memory
    assert group.label.startswith("warm-") and len(group.label) <= 63
    same = _group("s")
    assert same == group  # every member gets the same pod (its name does not name the model)
    assert parse_warm_options(group.env_value()) == group.options


def test_no_group_of_one_nor_for_what_cannot_switch_in_place() -> None:
    assert _group("dino") is None  # the only transformers option
    assert _group("fetched") is None  # its weights are fetched into the pod by an init container
    assert _group("missing") is None
    assert _group("n", SharingMode.HAMI) is None  # GPU limits per option
    assert _group("n", SharingMode.DRA) is None  # MPS: a claim per option's memory
    dra = warm_group(
        OPTIONS, "n", sharing=SharingMode.DRA, default_memory_gib=2.0, dra_time_sliced=True
    )
    assert dra is not None  # time-sliced claims name no memory
    assert _group("n", SharingMode.WHOLE) is not None
    engines = {"a": _opt("vllm"), "b": _opt("vllm")}
    group = warm_group(engines, "a", sharing=SharingMode.TIME_SLICED, default_memory_gib=2.0)
    assert group is None


def test_parse_refuses_what_is_not_a_group() -> None:
    for raw, words in (("{", "not JSON"), ("[]", "non-empty"), ('[{"model": "a"}]', "bad entry")):
        with pytest.raises(ValueError, match=words):
            parse_warm_options(raw)


def test_the_budget_is_the_request_beyond_what_the_process_holds_besides_parked_models() -> None:
    # 1 GiB resident, of which 0.25 GiB parked: 0.75 GiB is the runtime and the serving model.
    assert park_budget_bytes(1.5, GIB, GIB // 4) == 3 * GIB // 4
    assert park_budget_bytes(1.0, GIB, 0) == 0
    assert park_budget_bytes(0.5, GIB, 0) == 0  # over its request already: nothing parks
    assert park_budget_bytes(1.0, GIB // 4, GIB) == GIB  # never more than the request


def test_evicted_first_are_the_expired_then_the_least_recently_parked() -> None:
    parked = [Parked("a", 100, 0.0), Parked("b", 100, 10.0), Parked("c", 100, 20.0)]
    assert to_evict(parked, 300, now=25.0, keep_warm_seconds=60.0) == []
    assert to_evict(parked, 200, now=25.0, keep_warm_seconds=60.0) == ["a"]
    assert to_evict(parked, 100, now=25.0, keep_warm_seconds=60.0) == ["a", "b"]
    assert to_evict(parked, 300, now=60.0, keep_warm_seconds=60.0) == ["a"]  # due
    assert to_evict(parked, 0, now=0.0, keep_warm_seconds=60.0) == ["a", "b", "c"]


def test_a_pod_is_adopted_only_by_the_same_runtime_with_room_for_the_model() -> None:
    assert adoptable("h", "h", pod_vram_gib=1.5, wanted_vram_gib=0.5, terminating=False)
    assert adoptable("h", "h", pod_vram_gib=0.0, wanted_vram_gib=0.0, terminating=False)
    assert not adoptable("h", "h", pod_vram_gib=0.5, wanted_vram_gib=1.5, terminating=False)
    assert not adoptable("h", "g", pod_vram_gib=1.5, wanted_vram_gib=0.5, terminating=False)
    assert not adoptable(None, "h", pod_vram_gib=1.5, wanted_vram_gib=0.5, terminating=False)
    assert not adoptable("h", "h", pod_vram_gib=1.5, wanted_vram_gib=0.5, terminating=True)
