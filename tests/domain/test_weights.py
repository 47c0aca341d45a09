"""Weights URIs, cache keys and the manifest rule (pure)."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fovea.domain.weights import (
    WeightsSource,
    cache_key,
    local_source_path,
    manifest_sha256,
    manifest_text,
    parse_sha256,
    parse_weights_uri,
)

SHA = "ab" * 32


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("hf://org/name", WeightsSource("hf", "org/name")),
        ("hf://gpt2", WeightsSource("hf", "gpt2")),
        ("hf://org/name@v1.0", WeightsSource("hf", "org/name", revision="v1.0")),
        ("hf://org/name@refs/pr/1", WeightsSource("hf", "org/name", revision="refs/pr/1")),
        ("s3://my-bucket/models/bert", WeightsSource("s3", "my-bucket", "models/bert")),
        ("s3://my-bucket/models/bert/", WeightsSource("s3", "my-bucket", "models/bert")),
        ("s3://my-bucket", WeightsSource("s3", "my-bucket", "")),
        (
            "https://h.example/a/w.safetensors",
            WeightsSource("https", "https://h.example/a/w.safetensors"),
        ),
        (
            "http://127.0.0.1:8000/w.bin?x=1",
            WeightsSource("http", "http://127.0.0.1:8000/w.bin?x=1"),
        ),
        ("pvc://models/bert/v1", WeightsSource("pvc", "models", "bert/v1")),
        ("pvc://models", WeightsSource("pvc", "models", "")),
        ("file:///models/yolo.pt", WeightsSource("file", "/models/yolo.pt")),
        ("file:///srv/weights/", WeightsSource("file", "/srv/weights")),
    ],
)
def test_parses_each_scheme(uri: str, expected: WeightsSource) -> None:
    assert parse_weights_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("", "empty"),
        ("  hf://org/name", "spaces"),
        ("hf://org/na me", "spaces"),
        ("org/name", "not a URI"),
        ("gs://bucket/x", "not supported"),
        ("hf://", "hf://org/name"),
        ("hf://a/b/c", "hf://org/name"),
        ("hf://org//name", "hf://org/name"),
        ("hf://org/..", "not a valid hub repository"),
        ("hf://org/name@", "hf://org/name"),
        ("hf://org/name@../x", "not a valid revision"),
        ("s3://B/x", "bucket"),
        ("s3://bucket/a/../b", "must not contain .."),
        ("s3://bucket/a//b", "empty segment"),
        ("https:///path", "no host"),
        ("https://host", "URL path is empty"),
        ("https://host/dir/", "must name a file"),
        ("https://host/a/../b", "must not contain .."),
        ("pvc://Bad_Claim/x", "PersistentVolumeClaim"),
        ("pvc://claim/../etc", "must not contain .."),
        ("file://relative/path", "absolute path"),
        ("file:///", "path is empty"),
        ("file:///models/../etc/passwd", "must not contain .."),
        ("file:///models/./x", "must not contain ."),
    ],
)
def test_refuses_bad_uris_with_the_reason(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_weights_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "hf://org/name@main",
        "s3://bucket/prefix/x",
        "https://h/x.bin",
        "pvc://claim/p",
        "pvc://claim",
        "file:///a/b",
    ],
)
def test_canonical_uri_parses_back_to_the_same_source(uri: str) -> None:
    source = parse_weights_uri(uri)
    assert source.uri == uri
    assert parse_weights_uri(source.uri) == source


def test_cache_key_is_stable_readable_and_safe() -> None:
    source = parse_weights_uri("hf://org/name@v1.0")
    key = cache_key(source, None)
    assert key == cache_key(parse_weights_uri("hf://org/name@v1.0"), None)
    assert key.startswith("hf-org-name-v1.0-")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key)
    assert not key.startswith(".")


def test_cache_key_differs_by_revision_pin_and_source() -> None:
    keys = {
        cache_key(parse_weights_uri("hf://org/name"), None),
        cache_key(parse_weights_uri("hf://org/name@v2"), None),
        cache_key(parse_weights_uri("hf://org/name"), SHA),
        cache_key(parse_weights_uri("s3://bucket/org/name"), None),
        cache_key(parse_weights_uri("https://h/org/name"), None),
    }
    assert len(keys) == 5


def test_cache_key_pin_is_case_insensitive_and_checked() -> None:
    source = parse_weights_uri("s3://bucket/w.safetensors")
    assert cache_key(source, SHA.upper()) == cache_key(source, SHA)
    with pytest.raises(ValueError, match="64 hex digits"):
        cache_key(source, "abc")


@given(st.text(min_size=1, max_size=80))
def test_cache_key_is_filesystem_safe_for_any_url_path(tail: str) -> None:
    try:
        source = parse_weights_uri(f"https://host/{tail}")
    except ValueError:
        return
    key = cache_key(source, None)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", key)
    assert key not in (".", "..") and "/" not in key and len(key) <= 100


def test_parse_sha256() -> None:
    assert parse_sha256(" " + SHA.upper() + " ") == SHA
    for bad in ("", "xyz", SHA[:-1], SHA + "0", "g" * 64):
        with pytest.raises(ValueError, match="64 hex digits"):
            parse_sha256(bad)


def test_local_source_paths() -> None:
    assert (
        local_source_path(parse_weights_uri("pvc://models/bert/v1"))
        == "/mnt/fovea-pvc/models/bert/v1"
    )
    assert local_source_path(parse_weights_uri("pvc://models")) == "/mnt/fovea-pvc/models"
    assert local_source_path(parse_weights_uri("file:///srv/w.bin")) == "/srv/w.bin"
    with pytest.raises(ValueError, match="not a local"):
        local_source_path(parse_weights_uri("s3://bucket/x"))


def test_manifest_is_sorted_by_path_with_two_spaces() -> None:
    files = [("b/model.safetensors", "2" * 64), ("a.json", "1" * 64)]
    text = manifest_text(files)
    assert text == f"{'1' * 64}  a.json\n{'2' * 64}  b/model.safetensors\n"
    assert manifest_sha256(files) == hashlib.sha256(text.encode()).hexdigest()
    assert manifest_sha256(reversed(files)) == manifest_sha256(files)
