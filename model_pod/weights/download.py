"""Writing weights to a file: streamed with the sha256 computed on the way, or copied.

`download_stream` asks a source for a byte stream from an offset; after a
transient error it asks again from the bytes already written (HTTP Range),
or from 0 when the server cannot resume, under one `Retry` policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fovea.domain.backoff import exponential
from fovea.domain.weights import manifest_sha256
from fovea.model_pod.weights.errors import FetchError
from fovea.model_pod.weights.progress import Progress

log = logging.getLogger("fovea.model_pod.weights")

CHUNK_BYTES = 1 << 20
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 15.0

T = TypeVar("T")


@dataclass(frozen=True)
class Stream:
    """A source's answer to "the bytes from `offset` on".

    `start` is where the bytes really begin (0 when the server ignored the
    range); `total` the full size of the object when known.
    """

    chunks: Iterator[bytes]
    start: int
    total: int | None


Open = Callable[[int], Stream]


@dataclass
class Retry:
    """Exponential backoff for transient FetchErrors: base, 2x base, ... at most the cap."""

    attempts: int = DEFAULT_ATTEMPTS
    base_seconds: float = DEFAULT_BACKOFF_SECONDS
    sleep: Callable[[float], None] = time.sleep
    on_retry: Callable[[str], None] | None = None

    def delay(self, attempt: int) -> float:
        return exponential(attempt, self.base_seconds, BACKOFF_CAP_SECONDS)

    def run(self, what: str, action: Callable[[], T]) -> T:
        """`action()`, tried again after transient failures; the last failure is raised.

        `what` names the action in the log when the error's message does not already.
        """
        for attempt in range(self.attempts):
            try:
                return action()
            except FetchError as exc:
                if not exc.retryable:
                    raise
                if attempt + 1 >= self.attempts:
                    raise FetchError(
                        f"{exc} (gave up after {self.attempts} attempts)", retryable=True
                    ) from exc
                delay = self.delay(attempt)
                message = f"{exc}; retry {attempt + 1} of {self.attempts - 1} in {delay:.1f}s"
                log.warning("%s", message if message.startswith(what) else f"{what}: {message}")
                if self.on_retry is not None:
                    self.on_retry(message)
                self.sleep(delay)
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class FileResult:
    sha256: str
    size: int


class ParallelSink:
    """Writes chunks to a file and hashes them, each on its own thread, in order.

    The download thread only receives: writing (into the page cache) and
    sha256 release the GIL, so the three run at once on separate cores. An
    error of the writer (a full disk) is raised by the next `put` or by `close`.
    """

    _RESET = b"\x00reset"  # a marker, compared by identity: start the file over
    DEPTH = 32  # chunks in flight per worker (at most 32 MiB each)

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115  # closed by close()
        self._hasher = hashlib.sha256()
        self.error: BaseException | None = None
        self._queues: list[queue.Queue[bytes | None]] = [
            queue.Queue(maxsize=self.DEPTH),
            queue.Queue(maxsize=self.DEPTH),
        ]
        self._threads = [
            threading.Thread(target=self._work, args=(q, job), name=f"fovea-{name}", daemon=True)
            for q, job, name in zip(
                self._queues, (self._write, self._hash), ("write", "sha256"), strict=True
            )
        ]
        for thread in self._threads:
            thread.start()

    def _write(self, chunk: bytes) -> None:
        if chunk is self._RESET:
            self._file.seek(0)
            self._file.truncate()
        else:
            self._file.write(chunk)

    def _hash(self, chunk: bytes) -> None:
        if chunk is self._RESET:
            self._hasher = hashlib.sha256()
        else:
            self._hasher.update(chunk)

    def _work(self, chunks: queue.Queue[bytes | None], job: Callable[[bytes], None]) -> None:
        while (chunk := chunks.get()) is not None:
            if self.error is None:
                try:
                    job(chunk)
                except BaseException as exc:  # handed to the download thread
                    self.error = exc

    def put(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        for chunks in self._queues:
            chunks.put(chunk)

    def reset(self) -> None:
        self.put(self._RESET)

    def close(self) -> str:
        """Wait for both workers, close the file; the sha256 (or the writer's error)."""
        for chunks in self._queues:
            chunks.put(None)
        for thread in self._threads:
            thread.join()
        self._file.close()
        if self.error is not None:
            raise self.error
        return self._hasher.hexdigest()


def download_stream(
    what: str, open_at: Open, path: Path, progress: Progress, retry: Retry
) -> FileResult:
    """Write the object to `path`, resuming after transient errors; its sha256 and size."""
    written = 0
    expected: int | None = None
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = ParallelSink(path)

    def attempt() -> None:
        nonlocal written, expected
        stream = open_at(written)
        if stream.start != written:  # the server started over: so do we
            progress.add(-written)
            sink.reset()
            written = 0
        if stream.total is not None:
            expected = stream.total
        for chunk in stream.chunks:
            sink.put(chunk)
            written += len(chunk)
            progress.add(len(chunk))
        if expected is not None and written != expected:
            raise FetchError(
                f"{what}: the connection ended after {written} of {expected} bytes",
                retryable=True,
            )

    try:
        retry.run(what, attempt)
    except BaseException:
        with contextlib.suppress(BaseException):
            sink.close()
        raise
    return FileResult(sink.close(), written)


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES * 4):
            hasher.update(chunk)
    return hasher.hexdigest()


def copy_file(source: Path, target: Path, progress: Progress) -> FileResult:
    """Copy one file, hashing it on the way."""
    hasher = hashlib.sha256()
    size = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK_BYTES * 4):
            dst.write(chunk)
            hasher.update(chunk)
            size += len(chunk)
            progress.add(len(chunk))
    return FileResult(hasher.hexdigest(), size)


def tree_files(root: Path) -> list[str]:
    """Relative paths (with /) of the regular files under `root`, symlinks followed."""
    found = []
    for parent, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            full = Path(parent, name)
            if full.is_file():
                found.append(full.relative_to(root).as_posix())
    return found


def tree_manifest(root: Path, hashes: dict[str, str] | None = None) -> tuple[str, int]:
    """The manifest sha256 of a directory (hashing files not in `hashes`) and its size."""
    hashes = dict(hashes or {})
    size = 0
    for rel in tree_files(root):
        if rel not in hashes:
            hashes[rel] = file_sha256(root / rel)
        size += (root / rel).stat().st_size
    return manifest_sha256(hashes.items()), size


def chunked(stream: Iterable[bytes]) -> Iterator[bytes]:
    """Pass chunks through, skipping empty ones."""
    for chunk in stream:
        if chunk:
            yield chunk
