"""http(s):// weights: one file, streamed with urllib3, resumed with Range after an error."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fovea.domain.weights import WeightsSource
from fovea.model_pod.weights.download import (
    CHUNK_BYTES,
    FileResult,
    Retry,
    Stream,
    download_stream,
)
from fovea.model_pod.weights.errors import FetchError
from fovea.model_pod.weights.progress import Progress
from fovea.model_pod.weights.reader import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    Fetched,
    file_name,
    status_error,
)

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def http_pool() -> Any:
    """urllib3 (the fastest well-kept client here): redirects followed, no retries of its own."""
    import urllib3

    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        # Redirects followed (signed URLs); every other retry is ours, with backoff.
        retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5),
        headers={"Accept-Encoding": "identity"},
    )


class HttpReader:
    """One file over HTTP(S). `url` may be made afresh for each request (a signed S3 URL);
    messages name `what`, never the URL itself (a signature must not reach the status)."""

    def __init__(
        self, source: WeightsSource, url: Callable[[], str] | None = None, what: str = ""
    ) -> None:
        self.source = source
        self.what = what or source.uri
        self.url = url or (lambda: source.location)
        self.pool = http_pool()

    def _transport_error(self, exc: Exception) -> FetchError:
        import urllib3.exceptions as ux

        reason = exc.reason if isinstance(exc, ux.MaxRetryError) and exc.reason else exc
        permanent = isinstance(reason, ux.LocationValueError | ux.ResponseError)
        text = str(reason)
        if text.startswith("<") and ">: " in text:  # "<HTTPConnection object at 0x..>: ..."
            text = text.split(">: ", 1)[1]
        return FetchError(
            f"{self.what}: {type(reason).__name__}: {text}",
            retryable=not permanent and isinstance(reason, ux.HTTPError | OSError),
        )

    def _request(self, method: str, headers: dict[str, str]) -> Any:
        import urllib3.exceptions as ux

        try:
            return self.pool.request(method, self.url(), headers=headers, preload_content=False)
        except (ux.HTTPError, OSError) as exc:
            raise self._transport_error(exc) from exc

    def size(self) -> int | None:
        response = self._request("HEAD", {})
        response.release_conn()
        if response.status >= 400:
            return None  # some servers (signed URLs) answer GET only; GET will tell
        length = response.headers.get("content-length", "")
        return int(length) if length.isdigit() else None

    def open_at(self, offset: int, progress: Progress) -> Stream:
        import urllib3.exceptions as ux

        response = self._request("GET", {"Range": f"bytes={offset}-"} if offset else {})
        status = response.status
        if status not in (200, 206):
            response.release_conn()
            raise status_error(self.what, status)
        start, total = 0, None
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if match is None:
                response.release_conn()
                raise FetchError(f"{self.what}: a 206 answer without a Content-Range")
            start = int(match.group(1))
            total = int(match.group(3)) if match.group(3) != "*" else None
        elif (length := response.headers.get("content-length", "")).isdigit():
            total = int(length)
        if total is not None:
            progress.bytes_total = total

        def chunks() -> Iterator[bytes]:
            try:  # read1: what has arrived, so a resume loses nothing
                while chunk := response.read1(CHUNK_BYTES):
                    yield chunk
            except (ux.HTTPError, OSError) as exc:
                raise self._transport_error(exc) from exc
            finally:
                response.release_conn()

        return Stream(chunks(), start, total)

    def download(self, target: Path, progress: Progress, retry: Retry) -> FileResult:
        return download_stream(
            self.what, lambda offset: self.open_at(offset, progress), target, progress, retry
        )

    def fetch(self, into: Path, progress: Progress, retry: Retry) -> Fetched:
        result = self.download(into / file_name(self.source.name), progress, retry)
        return Fetched(single=True, sha256=result.sha256, size=result.size)
