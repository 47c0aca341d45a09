"""Failures and their reasons: out of memory is always said so; nobody else's prefix."""

from __future__ import annotations

import torch

from fovea.domain.messages import LoadFailure
from fovea.model_pod.adapters.base import LoadError
from fovea.model_pod.failures import MAX_REASON_CHARS, failure_of, is_out_of_memory


def test_torch_out_of_memory() -> None:
    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory(exc)
    kind, reason = failure_of(exc)
    assert kind == LoadFailure.OUT_OF_MEMORY
    assert reason.startswith("Out of memory: load failed: CUDA out of memory")


def test_cpu_allocator_refusal_is_out_of_memory() -> None:
    exc = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"
    )
    assert failure_of(exc, "warm up")[1].startswith("Out of memory: warm up failed:")
    assert failure_of(MemoryError())[1].startswith("Out of memory")


def test_load_error_is_its_own_reason() -> None:
    assert failure_of(LoadError("weights are not on disk")) == (
        LoadFailure.LOAD_ERROR,
        "weights are not on disk",
    )


def test_other_errors_name_their_type_and_the_stage_but_never_the_selections_prefix() -> None:
    assert failure_of(KeyError("layer.3.weight")) == (
        LoadFailure.EXCEPTION,
        "KeyError: 'layer.3.weight'",
    )
    assert (
        failure_of(ValueError("bad shape"), "warm up")[1] == "warm up failed: ValueError: bad shape"
    )
    assert not is_out_of_memory(ValueError("out of memory"))  # only allocator errors count


def test_reasons_are_one_bounded_line() -> None:
    reason = failure_of(RuntimeError("x\n" * 1000))[1]
    assert "\n" not in reason
    assert len(reason) <= MAX_REASON_CHARS
