"""The weights cache: LRU eviction that keeps held entries, a full cache, no partial use."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from fovea.domain.units import GIB
from fovea.domain.weights import cache_key, parse_weights_uri
from fovea.model_pod.weights.cache import HeldEntry, WeightsCache
from fovea.model_pod.weights.download import Retry
from fovea.model_pod.weights.fetcher import FetchRequest, fetch_weights
from fovea.model_pod.weights.progress import CACHED, FAILED, Outcome, ProgressReporter
from weight_servers import HttpFileServer, write_random_file

MIB = 1 << 20


def fetch(uri: str, cache: Path, limit_bytes: int | None = None) -> Outcome:
    size_gb = None if limit_bytes is None else limit_bytes / GIB
    request = FetchRequest(uri, cache, None, size_gb, Retry(attempts=2, base_seconds=0.01))
    return fetch_weights(request, ProgressReporter(None, uri))


def key(uri: str) -> str:
    return cache_key(parse_weights_uri(uri), None)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, str]:
    """Three 1 MiB files as file:// sources."""
    uris = {}
    for name in ("a", "b", "c"):
        write_random_file(tmp_path / "src" / f"{name}.safetensors", MIB)
        uris[name] = f"file://{tmp_path}/src/{name}.safetensors"
    return uris


def used_at(cache: Path, uri: str, when: float) -> None:
    """Set an entry's last use (its marker's mtime)."""
    os.utime(cache / ".fovea" / f"{key(uri)}.json", (when, when))


def test_least_recently_used_entry_is_evicted(sources: dict[str, str], tmp_path: Path) -> None:
    cache, limit = tmp_path / "cache", int(2.5 * MIB)
    for name in ("a", "b"):
        assert fetch(sources[name], cache, limit).phase == CACHED
    used_at(cache, sources["a"], 2_000_000)
    used_at(cache, sources["b"], 1_000_000)  # b: least recently used

    assert fetch(sources["c"], cache, limit).phase == CACHED
    kept = {e.key for e in WeightsCache(cache).entries()}
    assert kept == {key(sources["a"]), key(sources["c"])}
    assert not (cache / key(sources["b"])).exists()


def test_a_fetch_counts_as_a_use(sources: dict[str, str], tmp_path: Path) -> None:
    cache, limit = tmp_path / "cache", int(2.5 * MIB)
    for name in ("a", "b"):
        fetch(sources[name], cache, limit)
    used_at(cache, sources["a"], 1_000_000)
    used_at(cache, sources["b"], 2_000_000)
    assert fetch(sources["a"], cache, limit).fetched_bytes == 0  # a used now: b is the oldest
    fetch(sources["c"], cache, limit)
    assert {e.key for e in WeightsCache(cache).entries()} == {key(sources["a"]), key(sources["c"])}


def test_eviction_skips_an_entry_a_model_holds(sources: dict[str, str], tmp_path: Path) -> None:
    cache, limit = tmp_path / "cache", int(2.5 * MIB)
    for name in ("a", "b"):
        fetch(sources[name], cache, limit)
    used_at(cache, sources["a"], 1_000_000)  # a: the oldest, but held
    used_at(cache, sources["b"], 2_000_000)
    held = HeldEntry(cache / key(sources["a"]))
    held.acquire()
    try:
        assert fetch(sources["c"], cache, limit).phase == CACHED
    finally:
        held.release()
    assert {e.key for e in WeightsCache(cache).entries()} == {key(sources["a"]), key(sources["c"])}
    assert (cache / key(sources["a"]) / "a.safetensors").stat().st_size == MIB


def test_a_full_cache_fails_and_loses_nothing(sources: dict[str, str], tmp_path: Path) -> None:
    cache, limit = tmp_path / "cache", int(2.5 * MIB)
    for name in ("a", "b"):
        fetch(sources[name], cache, limit)
    holds = [HeldEntry(cache / key(sources[name])) for name in ("a", "b")]
    for held in holds:
        held.acquire()
    try:
        outcome = fetch(sources["c"], cache, limit)
    finally:
        for held in holds:
            held.release()
    assert outcome.phase == FAILED
    assert outcome.message.startswith("cache full: 1.0 MB needed, 512.0 KB free of 2.5 MB")
    assert "in use by running models" in outcome.message
    assert {e.key for e in WeightsCache(cache).entries()} == {key(sources["a"]), key(sources["b"])}
    assert list((cache / ".fovea" / "tmp").iterdir()) == []
    assert not (cache / key(sources["c"])).exists()


def test_weights_larger_than_the_whole_cache_fail_before_downloading(
    sources: dict[str, str], tmp_path: Path
) -> None:
    outcome = fetch(sources["a"], tmp_path / "cache", MIB // 2)
    assert outcome.phase == FAILED
    assert "larger than the whole cache" in outcome.message
    assert outcome.fetched_bytes == 0


def test_a_partial_file_is_never_used(sources: dict[str, str], tmp_path: Path) -> None:
    """A crash mid-fetch leaves a temporary and perhaps an unmarked entry: neither is used."""
    cache = tmp_path / "cache"
    WeightsCache(cache)
    k = key(sources["a"])
    crashed = cache / ".fovea" / "tmp" / f"{k}.999.deadbeef"
    crashed.mkdir()
    (crashed / "a.safetensors").write_bytes(b"partial")
    crashed.with_name(crashed.name + ".lock").touch()  # its fetch died: nobody holds the lock
    (cache / k).mkdir()
    (cache / k / "a.safetensors").write_bytes(b"partial")  # renamed, but never marked complete

    with pytest.raises(FileNotFoundError, match="not a complete weights cache entry"):
        HeldEntry(cache / k).acquire()  # a model never starts on it

    outcome = fetch(sources["a"], cache)
    assert outcome.phase == CACHED and outcome.fetched_bytes == MIB
    assert (cache / k / "a.safetensors").read_bytes() == Path(sources["a"][7:]).read_bytes()
    assert list((cache / ".fovea" / "tmp").iterdir()) == []


def test_two_fetches_of_the_same_weights_download_once(tmp_path: Path) -> None:
    write_random_file(tmp_path / "www" / "w.safetensors", 4 * MIB)
    with HttpFileServer(tmp_path / "www") as server:
        uri = f"{server.url}/w.safetensors"
        outcomes: list[Outcome] = []
        threads = [
            threading.Thread(target=lambda: outcomes.append(fetch(uri, tmp_path / "cache")))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert server.gets["/w.safetensors"] == 1
    assert sorted(o.fetched_bytes for o in outcomes) == [0, 4 * MIB]
    assert all(o.phase == CACHED for o in outcomes)
