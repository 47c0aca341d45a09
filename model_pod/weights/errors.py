"""The one error a fetch ends in, and whether trying again may help."""

from __future__ import annotations


class FetchError(RuntimeError):
    """A fetch failed; the message is the reason users see in `status.weights`.

    `retryable`: the cause may go away by itself (no connection, a reset, a 5xx,
    a timeout); a 404, a 403, missing credentials or a checksum mismatch will not.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class CacheFull(FetchError):
    """The cache cannot make room: every other entry is held by a running model."""
