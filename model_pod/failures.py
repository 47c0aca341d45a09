"""Turn what went wrong into a failure and its reason, as the model pod reports them.

The pod reports `status.runtime.failure` (a `LoadFailure`) and
`status.runtime.reason` (the details, rendered by
`fovea.domain.messages.failure_reason`); the operator and the API say
"Failed to load model: <reason>" with it, once. Out-of-memory failures always
start with "Out of memory" (the contract's wording, what people and alerts look
for); a LoadError's message is already the reason; anything else names its type
so it can be searched for.
"""

from __future__ import annotations

from fovea.domain.messages import MAX_REASON_CHARS, LoadFailure, failure_reason
from fovea.model_pod.adapters.base import LoadError

__all__ = ["MAX_REASON_CHARS", "Failure", "failure_of", "is_out_of_memory"]

# Messages torch and the C++ allocators use when an allocation is refused.
_OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate",
)

Failure = tuple[LoadFailure, str]  # what failed, and the reason to report


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OutOfMemoryError (CUDA or CPU), MemoryError and allocator refusals."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(marker in text for marker in _OOM_MARKERS)
    return False


def failure_of(exc: BaseException, stage: str = "load") -> Failure:
    """The failure and reason to report for an exception raised while loading or warming up."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if is_out_of_memory(exc):
        kind = LoadFailure.OUT_OF_MEMORY
    elif isinstance(exc, LoadError):
        kind = LoadFailure.LOAD_ERROR
    else:
        kind, message = LoadFailure.EXCEPTION, f"{type(exc).__name__}: {message}"
    return kind, failure_reason(kind, message, stage)
