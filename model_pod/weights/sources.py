"""One reader per weights URI scheme: how big the weights are, and fetching them into a directory.

Every reader turns its library's errors into a FetchError that says what went
wrong and whether trying again may help (`retryable`): no connection, a
reset, a timeout, a 5xx or a 429 may pass; a 404, a 401/403 or missing
credentials will not.

- http(s): urllib3, streamed, resumed with Range after a transient error.
- s3: boto3 (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY from the
  environment) lists; each object is downloaded through a URL it signs (no request), by
  the HTTP path; `s3://bucket/key` is one object when that key exists, else every
  object under `key/`.
- hf: huggingface_hub's snapshot_download (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE).
- pvc, file: a local copy.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fovea.domain.weights import WeightsSource, local_source_path
from fovea.model_pod.adapters.base import env_flag
from fovea.model_pod.weights.cache import directory_size
from fovea.model_pod.weights.download import (
    CHUNK_BYTES,
    FileResult,
    Retry,
    Stream,
    copy_file,
    download_stream,
    tree_files,
    tree_manifest,
)
from fovea.model_pod.weights.errors import FetchError
from fovea.model_pod.weights.progress import Progress

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0
DEFAULT_S3_REGION = "us-east-1"
SIGNED_URL_SECONDS = 3600
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
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


def reader_for(source: WeightsSource, env: Mapping[str, str] | None = None) -> Reader:
    env = os.environ if env is None else env
    if source.scheme in ("http", "https"):
        return HttpReader(source)
    if source.scheme == "s3":
        return S3Reader(source, env)
    if source.scheme == "hf":
        return HfReader(source, env)
    return LocalReader(source)


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


# --- http(s) -------------------------------------------------------------------------------


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


# --- s3 ------------------------------------------------------------------------------------


class S3Reader:
    def __init__(self, source: WeightsSource, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self._client: Any = None
        self._objects: list[tuple[str, int]] | None = None
        self._single = False

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            endpoint = self.env.get("AWS_ENDPOINT_URL_S3") or self.env.get("AWS_ENDPOINT_URL")
            region = self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION")
            session = boto3.session.Session(
                aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID") or None,
                aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY") or None,
                aws_session_token=self.env.get("AWS_SESSION_TOKEN") or None,
            )
            self._client = session.client(
                "s3",
                endpoint_url=endpoint or None,
                region_name=region or DEFAULT_S3_REGION,
                config=Config(
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                    retries={"max_attempts": 1, "mode": "standard"},  # we retry, with backoff
                    # S3-compatible servers (MinIO, SeaweedFS, moto) serve path-style URLs.
                    s3={"addressing_style": "path" if endpoint else "auto"},
                ),
            )
        return self._client

    def _error(self, exc: Exception, what: str) -> FetchError:
        import botocore.exceptions as bx

        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return FetchError(
                f"{what}: no S3 credentials: the catalog's weights_credentials Secret must give "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("NoSuchBucket", "NoSuchKey", "404", "NotFound"):
                return FetchError(f"{what} not found ({code})")
            if code in ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"):
                return FetchError(f"{what}: {code}", retryable=True)
            return status_error(what, status or 400, f"{code} {error.get('Message', '')}".strip())
        if isinstance(exc, bx.BotoCoreError):  # connection refused, reset, timeouts
            return FetchError(f"{what}: {exc}", retryable=True)
        return FetchError(
            f"{what}: {type(exc).__name__}: {exc}", retryable=isinstance(exc, OSError)
        )

    def _list(self) -> list[tuple[str, int]]:
        if self._objects is not None:
            return self._objects
        import botocore.exceptions as bx

        bucket, prefix = self.source.location, self.source.path
        try:
            if prefix:
                try:
                    head = self.client.head_object(Bucket=bucket, Key=prefix)
                    self._single = True
                    self._objects = [(prefix, int(head["ContentLength"]))]
                    return self._objects
                except bx.ClientError as exc:
                    if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchKey"):
                        raise
            objects: list[tuple[str, int]] = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
            )
            for page in pages:
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        objects.append((item["Key"], int(item["Size"])))
        except Exception as exc:
            raise self._error(exc, self.source.uri) from exc
        if not objects:
            raise FetchError(f"{self.source.uri} not found (no object, and none under it)")
        self._objects = objects
        return objects

    def size(self) -> int | None:
        return sum(size for _, size in self._list())

    def _signed_url(self, key: str) -> str:
        """A GET URL signed here (no request): the download streams like any HTTP file."""
        try:
            return str(
                self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.source.location, "Key": key},
                    ExpiresIn=SIGNED_URL_SECONDS,
                )
            )
        except Exception as exc:
            raise self._error(exc, f"s3://{self.source.location}/{key}") from exc

    def fetch(self, into: Path, progress: Progress, retry: Retry) -> Fetched:
        objects = self._list()
        progress.bytes_total = sum(size for _, size in objects)
        hashes: dict[str, str] = {}
        prefix = self.source.path
        for key, _ in objects:
            rel = (
                file_name(key.rsplit("/", 1)[-1])
                if self._single
                else key[len(prefix) :].lstrip("/")
            )
            if any(part in ("", ".", "..") for part in rel.split("/")):
                raise FetchError(f"s3://{self.source.location}/{key}: an unsafe key")
            # A fresh signature for every request: a retry never meets an expired one.
            http = HttpReader(
                self.source,
                url=lambda key=key: self._signed_url(key),  # type: ignore[misc]
                what=f"s3://{self.source.location}/{key}",
            )
            hashes[rel] = http.download(into / rel, progress, retry).sha256
        if self._single:
            (rel,) = hashes
            return Fetched(True, hashes[rel], (into / rel).stat().st_size)
        manifest, size = tree_manifest(into, hashes)
        return Fetched(False, manifest, size)


def _is_transport_error(exc: BaseException) -> bool:
    """No connection, a reset or a timeout in the hub client's HTTP library (httpx or httpx2)."""
    for module in ("httpx", "httpx2"):
        try:
            library = importlib.import_module(module)
        except ImportError:
            continue
        if isinstance(exc, library.TransportError):
            return True
    return False


# --- Hugging Face hub ----------------------------------------------------------------------


class HfReader:
    def __init__(self, source: WeightsSource, env: Mapping[str, str]) -> None:
        self.source = source
        self.offline = env_flag(env.get("HF_HUB_OFFLINE")) or env_flag(
            env.get("TRANSFORMERS_OFFLINE")
        )
        self.token = env.get("HF_TOKEN") or None
        self.endpoint = env.get("HF_ENDPOINT") or None
        self.resolved: str | None = None

    def _error(self, exc: Exception) -> FetchError:
        from huggingface_hub import errors

        what = self.source.uri
        if isinstance(exc, errors.LocalEntryNotFoundError):
            where = "the hub is offline (HF_HUB_OFFLINE=1)" if self.offline else "not reachable"
            return FetchError(
                f"{what} is not in the local hub cache and {where}",
                retryable=not self.offline,
            )
        if isinstance(exc, errors.GatedRepoError):
            return FetchError(f"{what} is gated: give a token with access (HF_TOKEN)")
        if isinstance(exc, errors.RepositoryNotFoundError):
            return FetchError(f"{what} not found (or private: give HF_TOKEN)")
        if isinstance(exc, errors.RevisionNotFoundError):
            return FetchError(f"{what}: the revision {self.source.revision!r} does not exist")
        if isinstance(exc, errors.HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", 0) or 0
            return status_error(what, int(status), str(exc).splitlines()[0])
        return FetchError(
            f"{what}: {type(exc).__name__}: {exc}",
            retryable=isinstance(exc, OSError) or _is_transport_error(exc),
        )

    def size(self) -> int | None:
        if self.offline:
            return None
        from huggingface_hub import HfApi

        try:
            info = HfApi(endpoint=self.endpoint, token=self.token).model_info(
                self.source.location, revision=self.source.revision, files_metadata=True
            )
        except Exception as exc:
            raise self._error(exc) from exc
        self.resolved = info.sha
        sizes = [s.size for s in info.siblings or [] if s.size is not None]
        return sum(sizes) if sizes else None

    def fetch(self, into: Path, progress: Progress, retry: Retry) -> Fetched:
        from huggingface_hub import snapshot_download

        def download() -> str:
            try:
                if self.offline:
                    return str(
                        snapshot_download(
                            self.source.location,
                            revision=self.source.revision,
                            local_files_only=True,
                        )
                    )
                progress.poll = lambda: directory_size(into)
                return str(
                    snapshot_download(
                        self.source.location,
                        revision=self.source.revision,
                        local_dir=into,
                        token=self.token,
                        endpoint=self.endpoint,
                    )
                )
            except Exception as exc:
                raise self._error(exc) from exc

        where = Path(retry.run(self.source.uri, download))
        if self.offline:  # from the hub's own cache: copy the snapshot (symlinks followed)
            self.resolved = where.name
            files = tree_files(where)
            progress.bytes_total = sum((where / rel).stat().st_size for rel in files)
            hashes = {rel: copy_file(where / rel, into / rel, progress).sha256 for rel in files}
            manifest, size = tree_manifest(into, hashes)
        else:
            shutil.rmtree(into / ".cache", ignore_errors=True)  # the hub client's bookkeeping
            progress.poll = None
            manifest, size = tree_manifest(into)
            progress.add(size)
        if size == 0:
            raise FetchError(f"{self.source.uri}: the repository holds no files")
        return Fetched(False, manifest, size, revision=self.resolved or self.source.revision)


# --- pvc, file -----------------------------------------------------------------------------


class LocalReader:
    def __init__(self, source: WeightsSource) -> None:
        self.source = source
        self.path = Path(local_source_path(source))

    def _missing(self) -> FetchError:
        pvc = self.source.scheme == "pvc"
        where = f" (the claim mounted in the pod: {self.path})" if pvc else ""
        return FetchError(f"{self.source.uri} not found: no such file or directory{where}")

    def size(self) -> int | None:
        if not self.path.exists():
            raise self._missing()
        return directory_size(self.path)

    def fetch(self, into: Path, progress: Progress, retry: Retry) -> Fetched:
        try:
            if self.path.is_file():
                result = copy_file(self.path, into / file_name(self.path.name), progress)
                return Fetched(True, result.sha256, result.size)
            if not self.path.is_dir():
                raise self._missing()
            files = tree_files(self.path)
            if not files:
                raise FetchError(f"{self.source.uri}: the directory is empty")
            hashes = {rel: copy_file(self.path / rel, into / rel, progress).sha256 for rel in files}
        except PermissionError as exc:
            raise FetchError(f"{self.source.uri}: permission denied: {exc}") from exc
        manifest, size = tree_manifest(into, hashes)
        return Fetched(False, manifest, size)
