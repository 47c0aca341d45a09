"""Fetching weights from real servers on loopback (HTTP, S3, a hub cache, files) into the cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from fovea.domain.weights import cache_key, manifest_sha256, parse_weights_uri
from fovea.model_pod.weights.download import Retry
from fovea.model_pod.weights.fetcher import FetchRequest, fetch_weights
from fovea.model_pod.weights.progress import CACHED, FAILED, Outcome, ProgressReporter
from weight_servers import (
    HttpFileServer,
    HubRepo,
    HubServer,
    S3Server,
    free_port,
    prefill_hf_cache,
    write_safetensors,
)

TENSORS = {"layer.weight": (64, 256), "layer.bias": (256,)}
FAST_RETRY = {"attempts": 4, "base_seconds": 0.01}


def fetch(
    uri: str,
    cache: Path,
    sha256: str | None = None,
    size_gb: float | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Outcome, ProgressReporter]:
    reporter = ProgressReporter(None, uri)
    request = FetchRequest(uri, cache, sha256, size_gb, Retry(**FAST_RETRY))  # type: ignore[arg-type]
    return fetch_weights(request, reporter, env), reporter


def entry_dir(cache: Path, uri: str, sha256: str | None = None) -> Path:
    return cache / cache_key(parse_weights_uri(uri), sha256)


def leftovers(cache: Path) -> list[Path]:
    """Temporaries left in the cache (there must be none after a fetch ends)."""
    return list((cache / ".fovea" / "tmp").iterdir())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[HttpFileServer, Path, str]]:
    root = tmp_path / "www"
    digest = write_safetensors(root / "models" / "tiny.safetensors", TENSORS)
    with HttpFileServer(root) as server:
        yield server, root, digest


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


# --- HTTP -------------------------------------------------------------------------------------


def test_http_fetch_verifies_and_a_second_fetch_downloads_nothing(
    served: tuple[HttpFileServer, Path, str], tmp_path: Path
) -> None:
    server, root, digest = served
    uri = f"{server.url}/models/tiny.safetensors"
    cache = tmp_path / "cache"
    first, reporter = fetch(uri, cache, sha256=digest)
    assert first.phase == CACHED, first.message
    size = (root / "models" / "tiny.safetensors").stat().st_size
    assert (first.fetched_bytes, first.bytes_done, first.bytes_total) == (size, size, size)
    assert first.sha256 == digest and "sha256 verified" in first.message
    stored = entry_dir(cache, uri, digest) / "tiny.safetensors"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    assert reporter.sent[0]["phase"] == "Fetching" and reporter.sent[-1]["phase"] == "Cached"

    gets = server.gets["/models/tiny.safetensors"]
    second, _ = fetch(uri, cache, sha256=digest)
    assert second.phase == CACHED and second.fetched_bytes == 0
    assert second.sha256 == digest and "0 bytes fetched" in second.message
    assert server.gets["/models/tiny.safetensors"] == gets  # not asked again
    assert leftovers(cache) == []


def test_http_404_fails_at_once_with_the_reason(
    served: tuple[HttpFileServer, Path, str], tmp_path: Path
) -> None:
    server, _, _ = served
    outcome, _ = fetch(f"{server.url}/models/missing.safetensors", tmp_path / "cache")
    assert outcome.phase == FAILED
    assert "not found (404)" in outcome.message
    assert server.gets["/models/missing.safetensors"] == 1  # a 404 is not retried


def test_http_403_is_not_retried(served: tuple[HttpFileServer, Path, str], tmp_path: Path) -> None:
    server, _, _ = served
    server.faults.statuses["/models/tiny.safetensors"] = [403] * 5
    outcome, _ = fetch(f"{server.url}/models/tiny.safetensors", tmp_path / "cache")
    assert outcome.phase == FAILED and "access denied (403)" in outcome.message
    assert server.gets["/models/tiny.safetensors"] == 1


def test_http_5xx_is_retried_with_backoff(
    served: tuple[HttpFileServer, Path, str], tmp_path: Path
) -> None:
    server, _, digest = served
    server.faults.statuses["/models/tiny.safetensors"] = [503, 502]
    outcome, reporter = fetch(f"{server.url}/models/tiny.safetensors", tmp_path / "cache")
    assert outcome.phase == CACHED and outcome.sha256 == digest
    assert server.gets["/models/tiny.safetensors"] == 3
    retries = [s["message"] for s in reporter.sent if "retry" in s["message"]]
    assert any("HTTP 503" in m and "retry 1 of 3" in m for m in retries)


def test_a_dropped_connection_is_resumed_with_range(
    served: tuple[HttpFileServer, Path, str], tmp_path: Path
) -> None:
    server, root, digest = served
    path = "/models/tiny.safetensors"
    size = (root / path.lstrip("/")).stat().st_size
    server.faults.drops[path] = [size // 3, size // 3]
    outcome, _ = fetch(f"{server.url}{path}", tmp_path / "cache", sha256=digest)
    assert outcome.phase == CACHED, outcome.message
    assert outcome.sha256 == digest and outcome.fetched_bytes == size
    assert server.gets[path] == 3
    assert server.bytes_sent[path] == size  # resumed where it stopped, nothing sent twice


def test_unreachable_source_fails_after_retries(tmp_path: Path) -> None:
    outcome, reporter = fetch(f"http://127.0.0.1:{free_port()}/w.safetensors", tmp_path / "c")
    assert outcome.phase == FAILED
    assert "Connection refused" in outcome.message
    assert "gave up after 4 attempts" in outcome.message
    assert sum("retry" in s["message"] for s in reporter.sent) == 3


def test_wrong_checksum_fails_and_keeps_nothing_but_the_other_entries(
    served: tuple[HttpFileServer, Path, str], tmp_path: Path
) -> None:
    server, root, digest = served
    cache = tmp_path / "cache"
    write_safetensors(root / "other.safetensors", {"w": (8,)})
    kept, _ = fetch(f"{server.url}/other.safetensors", cache)
    assert kept.phase == CACHED
    before = sorted(p.relative_to(cache) for p in cache.rglob("*") if ".fovea" not in p.parts)

    wrong = "0" * 64
    outcome, _ = fetch(f"{server.url}/models/tiny.safetensors", cache, sha256=wrong)
    assert outcome.phase == FAILED
    assert f"sha256 mismatch for {server.url}/models/tiny.safetensors" in outcome.message
    assert f"expected {wrong}" in outcome.message and digest in outcome.message
    assert not entry_dir(cache, f"{server.url}/models/tiny.safetensors", wrong).exists()
    after = sorted(p.relative_to(cache) for p in cache.rglob("*") if ".fovea" not in p.parts)
    assert after == before and leftovers(cache) == []


# --- S3 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A bucket holding one safetensors object and a model directory; their sha256 pins."""
    files = tmp_path_factory.mktemp("s3-files")
    client = s3.client()
    client.create_bucket(Bucket="weights")
    single = write_safetensors(files / "one.safetensors", TENSORS)
    client.upload_file(str(files / "one.safetensors"), "weights", "single/one.safetensors")
    hashes = {}
    for rel, shapes in {
        "model.safetensors": TENSORS,
        "sub/extra.safetensors": {"e": (4, 4)},
    }.items():
        hashes[rel] = write_safetensors(files / "dir" / rel, shapes, seed=3)
        client.upload_file(str(files / "dir" / rel), "weights", f"bert/v1/{rel}")
    config = b'{"model_type": "bert"}'
    client.put_object(Bucket="weights", Key="bert/v1/config.json", Body=config)
    hashes["config.json"] = hashlib.sha256(config).hexdigest()
    return {"single": single, "dir": manifest_sha256(hashes.items())}


def test_s3_object_and_prefix_are_fetched_and_verified(
    s3: S3Server, bucket: dict[str, str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    one, _ = fetch("s3://weights/single/one.safetensors", cache, bucket["single"], env=s3.env())
    assert one.phase == CACHED, one.message
    assert one.sha256 == bucket["single"]
    stored = entry_dir(cache, "s3://weights/single/one.safetensors", bucket["single"])
    assert [p.name for p in stored.iterdir()] == ["one.safetensors"]

    tree, _ = fetch("s3://weights/bert/v1", cache, bucket["dir"], env=s3.env())
    assert tree.phase == CACHED, tree.message
    assert tree.sha256 == bucket["dir"]
    stored = entry_dir(cache, "s3://weights/bert/v1", bucket["dir"])
    files = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file())
    assert files == ["config.json", "model.safetensors", "sub/extra.safetensors"]

    again, _ = fetch("s3://weights/bert/v1", cache, bucket["dir"], env=s3.env())
    assert again.phase == CACHED and again.fetched_bytes == 0


def test_s3_missing_credentials_fail_with_the_reason(
    s3: S3Server, bucket: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    outcome, _ = fetch(
        "s3://weights/single/one.safetensors", tmp_path / "c", env=s3.env(credentials=False)
    )
    assert outcome.phase == FAILED
    assert "no S3 credentials" in outcome.message and "AWS_ACCESS_KEY_ID" in outcome.message


def test_s3_missing_object_and_bucket(s3: S3Server, bucket: dict[str, str], tmp_path: Path) -> None:
    missing, _ = fetch("s3://weights/nothing/here", tmp_path / "c", env=s3.env())
    assert missing.phase == FAILED and "not found" in missing.message
    no_bucket, _ = fetch("s3://no-such-bucket/x", tmp_path / "c", env=s3.env())
    assert no_bucket.phase == FAILED and "not found (NoSuchBucket)" in no_bucket.message


def test_s3_unreachable_endpoint_is_retried_then_fails(tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
    }
    outcome, _ = fetch("s3://weights/single/one.safetensors", tmp_path / "c", env=env)
    assert outcome.phase == FAILED
    assert "Could not connect" in outcome.message and "gave up after 4 attempts" in outcome.message


# --- the hub (its own client, against a pre-filled cache, offline) ----------------------------


def run_cli(args: list[str], env: Mapping[str, str]) -> tuple[int, dict[str, object], str]:
    """`fovea-models fetch-weights ARGS` in its own process: exit code, final status, stderr."""
    done = subprocess.run(
        [sys.executable, "-P", "-m", "fovea.cli", "fetch-weights", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, json.loads(lines[-1]) if lines else {}, done.stderr


def test_hf_repository_from_the_hub_cache_offline(tmp_path: Path) -> None:
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"\x00" * 4096}
    commit = prefill_hf_cache(tmp_path / "hub", "acme/tiny-bert", files)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    expected = manifest_sha256((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())
    cache = tmp_path / "cache"
    args = ["--source", "hf://acme/tiny-bert", "--cache", str(cache), "--sha256", expected]
    code, status, stderr = run_cli(args, env)
    assert code == 0, stderr
    assert status["phase"] == "Cached" and status["sha256"] == expected
    assert status["revision"] == commit and status["fetchedBytes"] == 4096 + len(
        files["config.json"]
    )
    stored = entry_dir(cache, "hf://acme/tiny-bert", expected)
    assert (stored / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert not (stored / "model.safetensors").is_symlink()

    code, status, _ = run_cli(args, env)
    assert code == 0 and status["fetchedBytes"] == 0


def test_hf_repository_missing_offline_fails_with_the_reason(tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    code, status, stderr = run_cli(
        ["--source", "hf://acme/absent", "--cache", str(tmp_path / "c"), "--retries", "1"], env
    )
    assert code == 1
    assert status["phase"] == "Failed"
    assert "not in the local hub cache and the hub is offline" in str(status["message"])
    assert "not in the local hub cache" in stderr


def test_cli_exit_codes_for_bad_arguments(tmp_path: Path) -> None:
    code, status, stderr = run_cli(["--source", "gs://x/y", "--cache", str(tmp_path)], {})
    assert code == 2 and status["phase"] == "Failed" and "not supported" in stderr
    code, _, stderr = run_cli(
        ["--source", "file:///x", "--sha256", "abc", "--cache", str(tmp_path)], {}
    )
    assert code == 2 and "64 hex digits" in stderr


# --- local sources ----------------------------------------------------------------------------


def test_file_directory_is_copied_with_its_manifest(tmp_path: Path) -> None:
    source = tmp_path / "src"
    hashes = {
        "a.safetensors": write_safetensors(source / "a.safetensors", {"x": (3,)}),
        "d/b.safetensors": write_safetensors(source / "d" / "b.safetensors", {"y": (5,)}),
    }
    pin = manifest_sha256(hashes.items())
    outcome, _ = fetch(f"file://{source}", tmp_path / "cache", sha256=pin)
    assert outcome.phase == CACHED and outcome.sha256 == pin
    missing, _ = fetch(f"file://{tmp_path}/absent", tmp_path / "cache")
    assert missing.phase == FAILED and "no such file or directory" in missing.message


def test_pvc_source_reads_the_mounted_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pvc://claim/path reads <mount root>/claim/path (the operator mounts the claim there)."""
    import fovea.domain.weights as weights

    monkeypatch.setattr(weights, "PVC_MOUNT_ROOT", str(tmp_path / "mnt"))
    digest = write_safetensors(tmp_path / "mnt" / "models" / "bert" / "w.safetensors", TENSORS)
    outcome, _ = fetch("pvc://models/bert/w.safetensors", tmp_path / "cache", sha256=digest)
    assert outcome.phase == CACHED and outcome.sha256 == digest
    missing, _ = fetch("pvc://models/absent", tmp_path / "cache")
    assert missing.phase == FAILED
    assert f"(the claim mounted in the pod: {tmp_path}/mnt/models/absent)" in missing.message


# --- the hub, online: its client against a hub-protocol server on loopback -------------------


def hub_env(hub: HubServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_CACHE": str(tmp_path / "hub-cache"),
        "HF_HUB_DISABLE_XET": "1",
        **extra,
    }


def test_hf_repository_downloaded_through_the_hub_protocol(tmp_path: Path) -> None:
    files = {
        "config.json": b'{"model_type": "bert"}',
        "model.safetensors": b"\x01" * 8192,
        "sub/tokenizer.json": b"{}",
    }
    repo = HubRepo(files)
    expected = manifest_sha256((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())
    cache = tmp_path / "cache"
    args = ["--source", "hf://acme/tiny@main", "--cache", str(cache), "--sha256", expected]
    with HubServer({"acme/tiny": repo}) as hub:
        code, status, stderr = run_cli(args, hub_env(hub, tmp_path))
        assert code == 0, stderr
        assert status["phase"] == "Cached" and status["sha256"] == expected
        assert status["revision"] == repo.commit
        assert status["fetchedBytes"] == sum(len(v) for v in files.values())
        stored = entry_dir(cache, "hf://acme/tiny@main", expected)
        found = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file())
        assert found == sorted(files)  # the hub client's own bookkeeping is not kept
        asked = len(hub.requests)
        code, status, _ = run_cli(args, hub_env(hub, tmp_path))
        assert code == 0 and status["fetchedBytes"] == 0
        assert len(hub.requests) == asked  # a cached entry asks the hub nothing


def test_hf_gated_repository_needs_the_token(tmp_path: Path) -> None:
    repo = HubRepo({"model.safetensors": b"\x02" * 1024}, gated_token="hf_secret")
    args = ["--source", "hf://acme/gated", "--cache", str(tmp_path / "c"), "--retries", "2"]
    with HubServer({"acme/gated": repo}) as hub:
        code, status, _ = run_cli(args, hub_env(hub, tmp_path))
        assert code == 1
        assert status["message"] == "hf://acme/gated is gated: give a token with access (HF_TOKEN)"
        code, status, stderr = run_cli(args, hub_env(hub, tmp_path, HF_TOKEN="hf_secret"))
        assert code == 0, stderr
        assert status["phase"] == "Cached"


def test_hf_missing_repository_and_revision(tmp_path: Path) -> None:
    with HubServer({"acme/tiny": HubRepo({"a.json": b"{}"})}) as hub:
        env = hub_env(hub, tmp_path)
        cache = str(tmp_path / "c")
        code, status, _ = run_cli(["--source", "hf://acme/absent", "--cache", cache], env)
        assert code == 1
        assert status["message"] == "hf://acme/absent not found (or private: give HF_TOKEN)"
        code, status, _ = run_cli(["--source", "hf://acme/tiny@v9", "--cache", cache], env)
        assert code == 1
        assert status["message"] == "hf://acme/tiny@v9: the revision 'v9' does not exist"


def test_hf_unreachable_hub_is_retried_then_fails(tmp_path: Path) -> None:
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_CACHE": str(tmp_path / "hub-cache"),
    }
    args = ["--source", "hf://acme/tiny", "--cache", str(tmp_path / "c"), "--retries", "2"]
    args += ["--backoff-seconds", "0.01"]
    code, status, stderr = run_cli(args, env)
    assert code == 1
    assert "ConnectError" in str(status["message"]) and "gave up after 2 attempts" in stderr
