"""The weights cache: one directory per entry, complete or absent, evicted by least-recent use.

Layout under the cache root (a node's host directory or a shared volume):

    <root>/<key>/                 the entry: one file, or a tree
    <root>/.fovea/<key>.json      its complete-entry marker; its mtime is the last use
    <root>/.fovea/<key>.lock      a model that serves the entry holds a shared flock on it
    <root>/.fovea/<key>.fetch     a fetch of the entry holds an exclusive flock on it
    <root>/.fovea/cache.lock      held (exclusive) while entries are committed or evicted
    <root>/.fovea/tmp/            temporaries, each with its own lock while it is written

An entry counts only when its marker exists, and the marker is written after
the verified temporary was renamed into place, so a partial download is never
used: a crash leaves a temporary (removed by the next fetch) or an entry
without a marker (fetched again). Eviction takes an exclusive, non-blocking
flock on the entry's lock file, so an entry a running model holds is skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fovea.domain.units import format_bytes
from fovea.model_pod.weights.errors import CacheFull

META_DIR = ".fovea"
TMP_DIR = "tmp"


@dataclass(frozen=True)
class Entry:
    """A complete cache entry."""

    key: str
    size: int
    last_used: float  # seconds since the epoch
    meta: dict[str, Any]


def directory_size(path: Path) -> int:
    """Bytes of the regular files under `path` (0 when it is missing)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for parent, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size
    return total


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[IO[bytes]]:
    with open(path, "ab") as handle:
        fcntl.flock(handle, mode)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class WeightsCache:
    """A cache root with a size limit in bytes (None: no limit)."""

    def __init__(self, root: Path, size_limit: int | None = None, create: bool = True) -> None:
        self.root = root
        self.size_limit = size_limit
        self.meta_dir = root / META_DIR
        self.tmp_dir = self.meta_dir / TMP_DIR
        if create:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)

    # --- paths ---------------------------------------------------------------------

    def entry_path(self, key: str) -> Path:
        return self.root / key

    def marker(self, key: str) -> Path:
        return self.meta_dir / f"{key}.json"

    def lock_path(self, key: str) -> Path:
        return self.meta_dir / f"{key}.lock"

    # --- reading -------------------------------------------------------------------

    def entry(self, key: str) -> Entry | None:
        """The complete entry of `key`, or None."""
        marker = self.marker(key)
        try:
            meta = json.loads(marker.read_text())
            last_used = marker.stat().st_mtime
        except (OSError, ValueError):
            return None
        if not self.entry_path(key).exists():
            return None
        return Entry(key, int(meta.get("bytes", 0)), last_used, meta)

    def entries(self) -> list[Entry]:
        """Every complete entry, least recently used first."""
        found = []
        for marker in self.meta_dir.glob("*.json"):
            entry = self.entry(marker.name.removesuffix(".json"))
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda e: (e.last_used, e.key))

    def used_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def touch(self, key: str) -> None:
        """Record a use of the entry now (its marker's mtime is what LRU reads)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.marker(key))

    # --- writing -------------------------------------------------------------------

    @contextlib.contextmanager
    def fetching(self, key: str) -> Iterator[None]:
        """Held for the whole fetch of `key`: a second fetch of the same key waits."""
        with _flock(self.meta_dir / f"{key}.fetch", fcntl.LOCK_EX):
            yield

    @contextlib.contextmanager
    def temporary(self, key: str) -> Iterator[Path]:
        """A fresh temporary directory for `key`, removed afterwards unless committed.

        Its lock file appears already locked (made under another name, locked, renamed),
        so another fetch's clean-up never mistakes it for a crashed one's.
        """
        self.remove_stale_temporaries()
        path = self.tmp_dir / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        lock = path.with_name(path.name + ".lock")
        staging = path.with_name(path.name + ".locking")
        with open(staging, "wb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            os.rename(staging, lock)
            path.mkdir()
            try:
                yield path
            finally:
                _remove(path)
                _remove(lock)

    def remove_stale_temporaries(self) -> None:
        """Remove temporaries no fetch is writing (one that crashed left them)."""
        for lock in self.tmp_dir.glob("*.lock"):
            try:
                with open(lock, "rb") as handle:  # never creates it
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    _remove(lock.with_name(lock.name.removesuffix(".lock")))
                    _remove(lock)
            except BlockingIOError:
                continue  # a running fetch writes it
            except FileNotFoundError:
                continue  # its fetch just ended
        for path in self.tmp_dir.iterdir():
            if path.is_dir() and not path.with_name(path.name + ".lock").exists():
                _remove(path)

    def make_room(self, needed: int, keep: str) -> list[str]:
        """Evict least-recently-used entries (never `keep`, never held) until `needed` fits.

        Returns the evicted keys; raises CacheFull when the held entries leave no room.
        """
        if self.size_limit is None:
            return []
        with _flock(self.meta_dir / "cache.lock", fcntl.LOCK_EX):
            return self._make_room(needed, keep)

    def _make_room(self, needed: int, keep: str) -> list[str]:
        assert self.size_limit is not None
        if needed > self.size_limit:
            raise CacheFull(
                f"cache full: the weights ({format_bytes(needed)}) are larger than the whole cache "
                f"({format_bytes(self.size_limit)}); raise weights_cache.size_gb"
            )
        entries = [e for e in self.entries() if e.key != keep]
        used = sum(e.size for e in entries)
        evicted: list[str] = []
        held: list[str] = []
        for entry in entries:
            if used + needed <= self.size_limit:
                break
            if self._evict(entry.key):
                evicted.append(entry.key)
                used -= entry.size
            else:
                held.append(entry.key)
        if used + needed > self.size_limit:
            free = format_bytes(self.size_limit - used)
            raise CacheFull(
                f"cache full: {format_bytes(needed)} needed, {free} free of "
                f"{format_bytes(self.size_limit)}, and the other entries are in use by running "
                "models "
                f"({', '.join(held) or 'none'}); raise weights_cache.size_gb or unload a model"
            )
        return evicted

    def _evict(self, key: str) -> bool:
        """Remove an entry unless a model holds it; True when it was removed."""
        lock = self.lock_path(key)
        with open(lock, "ab") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            _remove(self.marker(key))  # incomplete from here on: nobody starts on it
            _remove(self.entry_path(key))
            _remove(lock)
        return True

    def commit(self, key: str, temporary: Path, meta: dict[str, Any]) -> Entry:
        """Move a verified temporary into place and mark the entry complete."""
        size = int(meta["bytes"])
        with _flock(self.meta_dir / "cache.lock", fcntl.LOCK_EX):
            existing = self.entry(key)
            if existing is not None:
                return existing
            if self.size_limit is not None:
                self._make_room(size, keep=key)
            target = self.entry_path(key)
            _remove(target)  # an earlier fetch's incomplete entry (no marker)
            os.rename(temporary, target)
            self.lock_path(key).touch()  # a model may hold it even on a read-only mount
            staged = self.marker(key).with_suffix(".json.tmp")
            staged.write_text(json.dumps({**meta, "committedAt": time.time()}, indent=1))
            os.rename(staged, self.marker(key))
        entry = self.entry(key)
        assert entry is not None
        return entry


class HeldEntry:
    """A model's shared hold on its cache entry: eviction skips the entry while it lasts."""

    def __init__(self, weights_path: Path) -> None:
        self.path = weights_path
        self.cache = WeightsCache(weights_path.parent, create=False)
        self.key = weights_path.name
        self._handle: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the shared lock (waiting out an eviction in progress); check the entry."""
        try:  # read-only is enough for flock: the mount may be read-only
            handle = open(self.cache.lock_path(self.key), "rb")  # noqa: SIM115  # held for life
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{self.path} is not a complete weights cache entry (not fetched, or evicted)"
            ) from exc
        fcntl.flock(handle, fcntl.LOCK_SH)
        if self.cache.entry(self.key) is None:
            handle.close()
            raise FileNotFoundError(
                f"{self.path} is not a complete weights cache entry (not fetched, or evicted)"
            )
        self._handle = handle
        with contextlib.suppress(OSError):
            self.cache.touch(self.key)

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):  # a read-only mount: last use stays as it was
                self.cache.touch(self.key)
            self._handle.close()
            self._handle = None
