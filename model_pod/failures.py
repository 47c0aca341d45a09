"""Turn what went wrong into the one-line reason a status shows.

Out-of-memory failures always start with "Out of memory" (the contract's
wording, and what the operator and the API look for); a LoadError's message is
already the reason; anything else names its type so it can be searched for.
"""

from __future__ import annotations

from fovea.model_pod.adapters.base import LoadError

OUT_OF_MEMORY = "Out of memory"

# Messages torch and the C++ allocators use when an allocation is refused.
_OOM_MARKERS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate",
)

MAX_REASON_CHARS = 600


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OutOfMemoryError (CUDA or CPU), MemoryError and allocator refusals."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(marker in text for marker in _OOM_MARKERS)
    return False


def failure_reason(exc: BaseException, stage: str = "load") -> str:
    """The reason to report for an exception raised while loading or warming up."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if is_out_of_memory(exc):
        reason = f"{OUT_OF_MEMORY}: {stage} failed: {message}"
    elif isinstance(exc, LoadError):
        reason = message
    else:
        reason = f"Failed to {stage} model: {type(exc).__name__}: {message}"
    return _shorten(reason)


def _shorten(text: str) -> str:
    if len(text) <= MAX_REASON_CHARS:
        return text
    return text[: MAX_REASON_CHARS - 1] + "…"
