"""What every weights source reader offers, and the helpers they share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fovea.model_pod.weights.download import Retry
from fovea.model_pod.weights.errors import FetchError
from fovea.model_pod.weights.progress import Progress

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Fetched:
    """What a reader wrote: one file (its sha256) or a tree (its manifest's sha256)."""

    single: bool
    sha256: str
    size: int
    revision: str | None = None


class Reader(Protocol):
    def size(self) -> int | None:
        """The weights' size in bytes, if the source can tell before fetching."""
        ...

    def fetch(self, into: Path, progress: Progress, retry: Retry) -> Fetched:
        """Write the weights under `into` (an empty directory)."""
        ...


def file_name(name: str) -> str:
    """A safe file name for a single-file source."""
    return _SAFE_NAME.sub("_", name).strip("._") or "weights"


def status_error(what: str, status: int, detail: str = "") -> FetchError:
    """A FetchError for an HTTP status: 5xx, 408 and 429 may pass; other 4xx will not."""
    extra = f": {detail}" if detail else ""
    if status == 404 or status == 410:
        return FetchError(f"{what} not found ({status}){extra}")
    if status in (401, 403):
        return FetchError(f"{what}: access denied ({status}); check the credentials{extra}")
    return FetchError(
        f"{what}: HTTP {status}{extra}", retryable=status >= 500 or status in (408, 429)
    )
