"""Where a model's weights come from, and where they sit in the cache: pure rules, no I/O.

A catalog option may name its weights by a URI (`weights:` in models.yaml):

- `hf://org/name[@revision]`  a Hugging Face hub repository (or `hf://name`)
- `s3://bucket/prefix`        one object, or every object under the prefix
- `https://host/path`, `http://host/path`   one plain file
- `pvc://claim/path`          a file or directory on a PersistentVolumeClaim
- `file:///abs/path`          a file or directory the pod can see

`parse_weights_uri` refuses anything else with a message that says why.
`cache_key` names the cache entry of a source (a stable, filesystem-safe
directory name); the model container finds its weights at
`WEIGHTS_MOUNT/<key>`. A `weights_sha256` pins the content: for one file it
is that file's sha256; for a directory (a prefix, a repository) it is the
sha256 of the manifest, the lines `"<sha256>  <relative path>\\n"` sorted by
path (`manifest_text`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

# Where the weights cache is mounted in a model pod (the fetch and the model container).
WEIGHTS_MOUNT: Final = "/var/cache/fovea-models/weights"
# Where a `pvc://claim/...` source's claim is mounted (read-only) in the fetch container.
PVC_MOUNT_ROOT: Final = "/mnt/fovea-pvc"
# The model container's environment: its cache entry (set by the operator's pod spec).
ENV_WEIGHTS_PATH: Final = "FOVEA_WEIGHTS_PATH"

SCHEMES: Final = ("hf", "s3", "https", "http", "pvc", "file")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Hub repository names: letters, digits, `-`, `_`, `.` (no `--` or `..` at the ends).
_HF_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_HF_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
KEY_SLUG_MAX: Final = 60


@dataclass(frozen=True)
class WeightsSource:
    """A parsed weights URI.

    `location` is the repository id (hf), the bucket (s3), the full URL
    (http/https), the claim (pvc) or the absolute path (file); `path` is the
    prefix (s3) or the path inside the claim (pvc), "" otherwise; `revision`
    only for hf (None: the default branch).
    """

    scheme: str
    location: str
    path: str = ""
    revision: str | None = None

    @property
    def uri(self) -> str:
        """The URI in its one canonical spelling."""
        if self.scheme == "hf":
            return f"hf://{self.location}" + (f"@{self.revision}" if self.revision else "")
        if self.scheme in ("s3", "pvc"):
            return f"{self.scheme}://{self.location}" + (f"/{self.path}" if self.path else "")
        if self.scheme == "file":
            return f"file://{self.location}"
        return self.location

    @property
    def name(self) -> str:
        """The last part of the URI, for people and for a single file's name in the cache."""
        if self.scheme == "hf":
            return self.location.rsplit("/", 1)[-1]
        if self.scheme in ("http", "https"):
            return urlsplit(self.location).path.rstrip("/").rsplit("/", 1)[-1]
        if self.scheme in ("s3", "pvc"):
            return (self.path or self.location).rsplit("/", 1)[-1]
        return self.location.rstrip("/").rsplit("/", 1)[-1]


def _fail(uri: str, why: str) -> ValueError:
    return ValueError(f"weights {uri!r}: {why}")


def _clean_segments(uri: str, path: str, what: str, allow_empty: bool) -> str:
    """`path` without its outer slashes, refusing `..`, `.` and empty segments."""
    stripped = path.strip("/")
    if not stripped:
        if allow_empty:
            return ""
        raise _fail(uri, f"the {what} is empty")
    for segment in stripped.split("/"):
        if segment in ("", ".", ".."):
            shown = segment or "an empty segment (//)"
            raise _fail(uri, f"the {what} must not contain {shown}")
    return stripped


def parse_weights_uri(uri: str) -> WeightsSource:
    """Parse a weights URI; ValueError with the reason when it is not one this project reads."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError("weights: the URI is empty")
    if uri != uri.strip() or any(ch.isspace() or ord(ch) < 32 for ch in uri):
        raise _fail(uri, "must not contain spaces or control characters")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise _fail(uri, f"not a URI; give one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme not in SCHEMES:
        raise _fail(uri, f"scheme {scheme!r} is not supported (one of {', '.join(SCHEMES)})")
    if scheme == "hf":
        return _parse_hf(uri, rest)
    if scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise _fail(uri, f"{bucket!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
        return WeightsSource("s3", bucket, _clean_segments(uri, prefix, "prefix", True))
    if scheme in ("http", "https"):
        parts = urlsplit(uri)
        if not parts.hostname:
            raise _fail(uri, "the URL has no host")
        _clean_segments(uri, parts.path, "URL path", False)
        if parts.path.endswith("/"):
            raise _fail(uri, "the URL must name a file, not end in /")
        if parts.fragment:
            raise _fail(uri, "the URL must not have a #fragment")
        return WeightsSource(scheme, uri)
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        if not _CLAIM.match(claim):
            raise _fail(uri, f"{claim!r} is not a PersistentVolumeClaim name")
        return WeightsSource("pvc", claim, _clean_segments(uri, path, "path", True))
    # file
    if not rest.startswith("/"):
        raise _fail(uri, "a file URI needs an absolute path: file:///abs/path (three slashes)")
    path = _clean_segments(uri, rest, "path", False)
    return WeightsSource("file", "/" + path)


def _parse_hf(uri: str, rest: str) -> WeightsSource:
    repo, at, revision = rest.partition("@")
    parts = repo.split("/")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise _fail(uri, "a hub repository is hf://org/name or hf://name")
    for part in parts:
        if not _HF_PART.match(part) or ".." in part or "--" in part:
            raise _fail(uri, f"{part!r} is not a valid hub repository name part")
    if at:
        if not _HF_REVISION.match(revision) or ".." in revision or "//" in revision:
            raise _fail(uri, f"{revision!r} is not a valid revision (branch, tag or commit)")
        if revision.endswith("/"):
            raise _fail(uri, "the revision must not end in /")
    return WeightsSource("hf", repo, revision=revision or None)


def parse_sha256(value: str) -> str:
    """A sha256 as 64 lower-case hex digits; ValueError otherwise."""
    text = str(value).strip().lower()
    if not _SHA256.match(text):
        raise ValueError(f"weights_sha256 {value!r} is not 64 hex digits")
    return text


def cache_key(source: WeightsSource, sha256: str | None) -> str:
    """The cache entry's directory name: readable, stable, and safe on any filesystem.

    `<scheme>-<name>-<16 hex>`, the hex a hash of the canonical URI (the
    revision included) and the pinned sha256, so another revision or another
    pin is another entry.
    """
    pin = parse_sha256(sha256) if sha256 else ""
    digest = hashlib.sha256(f"{source.uri}\n{pin}".encode()).hexdigest()[:16]
    readable = source.location if source.scheme == "hf" else source.name
    if source.revision:
        readable = f"{readable}@{source.revision}"
    slug = _UNSAFE_KEY_CHARS.sub("-", readable).strip("-.")[:KEY_SLUG_MAX] or "weights"
    return f"{source.scheme}-{slug}-{digest}"


def local_source_path(source: WeightsSource) -> str:
    """Where a pvc:// or file:// source is read from inside the fetch container."""
    if source.scheme == "file":
        return source.location
    if source.scheme == "pvc":
        base = f"{PVC_MOUNT_ROOT}/{source.location}"
        return f"{base}/{source.path}" if source.path else base
    raise ValueError(f"{source.uri} is not a local (pvc:// or file://) source")


def manifest_text(files: Iterable[tuple[str, str]]) -> str:
    """The manifest of a directory: `"<sha256>  <relative path>\\n"` per file, sorted by path.

    `files` holds (relative path with `/` separators, sha256 hex) pairs.
    """
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(files))


def manifest_sha256(files: Iterable[tuple[str, str]]) -> str:
    """The sha256 that pins a directory: that of its manifest."""
    return hashlib.sha256(manifest_text(files).encode()).hexdigest()
