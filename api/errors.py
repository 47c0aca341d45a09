"""The API's domain errors: one type per failure, each with its HTTP status.

The service layer raises these; `exception_handlers` turns every one of them
into the contract's `{"error": "<message>"}` body in one place.
"""

from __future__ import annotations

from fovea.domain.conditions import Reason
from fovea.domain.messages import say

# The contract's message when the Kubernetes API (the "model service") cannot be reached.
CONNECTION_FAILED = "Connection to model service failed"
LOAD_TIMEOUT = "Model service timeout during model loading"
# The most of a client's own input an error echoes back (and the log repeats).
MAX_ECHO_CHARS = 100


def shown(value: str, limit: int = MAX_ECHO_CHARS) -> str:
    """Client input as an error may echo it: at most `limit` characters, each printable.

    A longer value is cut and says how long it was; control characters (newlines
    that would forge log lines, terminal escapes) are written as escapes.
    """
    cut = value[:limit]
    printable = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in cut)
    if len(value) <= limit:
        return printable
    return f"{printable}… ({len(value)} characters)"


class ApiError(Exception):
    """Base of every error the API answers with; `message` is what the client reads."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """The request itself is wrong (missing or malformed parameter)."""

    status_code = 400


class InvalidTaskType(BadRequest):
    def __init__(self, task: str) -> None:
        super().__init__(f"Invalid task_type: {shown(task)}")


class NoModelSelected(BadRequest):
    def __init__(self, task: str) -> None:
        super().__init__(f"No model selected for task '{shown(task)}'")


class ModelNotFound(ApiError):
    status_code = 404

    def __init__(self, task: str, model: str) -> None:
        super().__init__(say(Reason.MODEL_NOT_FOUND, model=shown(model), task=shown(task)))


class Unauthorized(ApiError):
    status_code = 401

    def __init__(self) -> None:
        super().__init__("Missing or invalid bearer token")


class ClusterUnavailable(ApiError):
    """The Kubernetes API cannot be reached, or the cache has lost its watch."""

    status_code = 503

    def __init__(self, message: str = CONNECTION_FAILED) -> None:
        super().__init__(message)


class ModelLoadFailed(ApiError):
    """The model failed to load: the message is `load_outcome`'s, "Failed to load model: …"."""

    status_code = 500


class ModelLoadTimeout(ApiError):
    status_code = 503

    def __init__(self) -> None:
        super().__init__(LOAD_TIMEOUT)


class TaskMismatch(ApiError):
    """The selection a write would change belongs to another task (names collide)."""

    status_code = 409

    def __init__(self, name: str, owner: str, task: str) -> None:
        super().__init__(
            f"ModelSelection '{name}' belongs to task '{owner}', not '{shown(task)}': "
            "task names that differ only by case, '_', '-' or '.' share a selection name; "
            "rename one of the tasks in the catalog"
        )


class WriteConflict(ApiError):
    """A write kept losing races (another client created and deleted meanwhile)."""

    status_code = 409

    def __init__(self, name: str, tries: int) -> None:
        super().__init__(f"ModelSelection '{name}' kept changing; gave up after {tries} tries")


class CatalogUnreadable(ApiError):
    """The namespace's ModelCatalog is missing or does not parse: nothing can be answered."""

    status_code = 500
