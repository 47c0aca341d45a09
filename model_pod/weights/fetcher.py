"""One fetch of one weights source into the cache, ending `Cached` or `Failed`.

1. A complete entry for the source (and pin) is used as it is: 0 bytes fetched.
2. Otherwise, holding the entry's fetch lock (a second fetch of the same weights waits
   and then finds them cached), room is made when the size is known in advance.
3. The reader writes into a temporary directory; the sha256 (a file's, or the manifest's
   for a tree) is checked against the pin; the temporary is renamed into place and
   marked complete. Any failure removes the temporary and nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fovea.domain.units import GIB, format_bytes
from fovea.domain.weights import cache_key, parse_sha256, parse_weights_uri
from fovea.model_pod.weights.cache import WeightsCache
from fovea.model_pod.weights.download import Retry
from fovea.model_pod.weights.errors import FetchError
from fovea.model_pod.weights.progress import (
    CACHED,
    FAILED,
    Outcome,
    Progress,
    ProgressReporter,
)
from fovea.model_pod.weights.sources import reader_for

log = logging.getLogger("fovea.model_pod.weights")


@dataclass
class FetchRequest:
    uri: str
    cache_dir: Path
    sha256: str | None = None
    cache_size_gb: float | None = None  # GiB; None: no limit
    retry: Retry = field(default_factory=Retry)

    def check(self) -> tuple[str, str | None]:
        """The cache key and the pin; ValueError when the request is malformed."""
        source = parse_weights_uri(self.uri)
        pin = parse_sha256(self.sha256) if self.sha256 else None
        if self.cache_size_gb is not None and self.cache_size_gb <= 0:
            raise ValueError(f"the cache size must be positive, not {self.cache_size_gb}")
        return cache_key(source, pin), pin


def fetch_weights(
    request: FetchRequest, reporter: ProgressReporter, env: Mapping[str, str] | None = None
) -> Outcome:
    """Fetch into the cache (or find it there) and report; the Outcome says which."""
    key, pin = request.check()
    limit = None if request.cache_size_gb is None else int(request.cache_size_gb * GIB)
    cache = WeightsCache(request.cache_dir, limit)
    progress = Progress()
    request.retry.on_retry = reporter.note
    try:
        outcome = _cached(cache, key)
        if outcome is None:
            with cache.fetching(key):
                outcome = _cached(cache, key) or _fetch(
                    request, cache, key, pin, progress, reporter, env
                )
    except FetchError as exc:
        outcome = Outcome(
            phase=FAILED,
            message=str(exc),
            bytes_done=progress.bytes_done,
            bytes_total=progress.bytes_total,
            fetched_bytes=progress.bytes_done,
        )
    except OSError as exc:  # the cache itself: a read-only or full disk
        outcome = Outcome(phase=FAILED, message=f"the weights cache {request.cache_dir}: {exc}")
    reporter.finish(outcome)
    return outcome


def _cached(cache: WeightsCache, key: str) -> Outcome | None:
    entry = cache.entry(key)
    if entry is None:
        return None
    cache.touch(key)
    return Outcome(
        phase=CACHED,
        message=f"already cached ({format_bytes(entry.size)}): 0 bytes fetched",
        bytes_done=entry.size,
        bytes_total=entry.size,
        fetched_bytes=0,
        sha256=entry.meta.get("sha256"),
        revision=entry.meta.get("revision"),
    )


def _fetch(
    request: FetchRequest,
    cache: WeightsCache,
    key: str,
    pin: str | None,
    progress: Progress,
    reporter: ProgressReporter,
    env: Mapping[str, str] | None,
) -> Outcome:
    source = parse_weights_uri(request.uri)
    reader = reader_for(source, env)
    reporter.start(progress, f"looking up {source.uri}", revision=source.revision)
    total = request.retry.run(source.uri, reader.size)
    progress.bytes_total = total
    if total is not None:
        cache.make_room(total, keep=key)
    started = time.monotonic()
    reporter.note(f"fetching {source.uri}")
    with cache.temporary(key) as temporary:
        fetched = reader.fetch(temporary, progress, request.retry)
        if pin is not None and fetched.sha256 != pin:
            what = "the file" if fetched.single else "the manifest of the files"
            raise FetchError(
                f"sha256 mismatch for {source.uri}: expected {pin}, {what} has "
                f"{fetched.sha256}; the download was discarded"
            )
        entry = cache.commit(
            key,
            temporary,
            {
                "source": source.uri,
                "sha256": fetched.sha256,
                "bytes": fetched.size,
                "single": fetched.single,
                "revision": fetched.revision,
            },
        )
    seconds = max(time.monotonic() - started, 1e-9)
    rate = fetched.size / seconds
    return Outcome(
        phase=CACHED,
        message=(
            f"fetched {format_bytes(fetched.size)} in {seconds:.1f}s "
            f"({format_bytes(rate)}/s), "
            + ("sha256 verified" if pin else "sha256 computed (no weights_sha256 pin)")
        ),
        bytes_done=entry.size,
        bytes_total=entry.size,
        fetched_bytes=fetched.size,
        sha256=fetched.sha256,
        revision=fetched.revision,
        bytes_per_second=rate,
    )
