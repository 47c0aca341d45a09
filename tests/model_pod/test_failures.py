"""Failure reasons: out of memory is always said so."""

from __future__ import annotations

import torch

from fovea.model_pod.adapters.base import LoadError
from fovea.model_pod.failures import MAX_REASON_CHARS, failure_reason, is_out_of_memory


def test_torch_out_of_memory() -> None:
    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory(exc)
    assert failure_reason(exc).startswith("Out of memory: load failed: CUDA out of memory")


def test_cpu_allocator_refusal_is_out_of_memory() -> None:
    exc = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"
    )
    assert failure_reason(exc, "warm up").startswith("Out of memory: warm up failed:")
    assert failure_reason(MemoryError()).startswith("Out of memory")


def test_load_error_is_its_own_reason() -> None:
    assert failure_reason(LoadError("weights are not on disk")) == "weights are not on disk"


def test_other_errors_name_their_type() -> None:
    reason = failure_reason(KeyError("layer.3.weight"))
    assert reason == "Failed to load model: KeyError: 'layer.3.weight'"
    assert not is_out_of_memory(ValueError("out of memory"))  # only allocator errors count


def test_reasons_are_one_bounded_line() -> None:
    reason = failure_reason(RuntimeError("x\n" * 1000))
    assert "\n" not in reason
    assert len(reason) <= MAX_REASON_CHARS
