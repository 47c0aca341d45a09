"""s3:// weights: boto3 lists (and signs); each object streams by the HTTP path.

`s3://bucket/key` is one object when that key exists, else every object under
`key/`. Settings from the environment: AWS_ENDPOINT_URL (any S3-compatible
server; path-style addressing then), AWS_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, else boto3's own credential chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fovea.domain.weights import WeightsSource
from fovea.model_pod.weights.download import Retry, tree_manifest
from fovea.model_pod.weights.errors import FetchError
from fovea.model_pod.weights.progress import Progress
from fovea.model_pod.weights.reader import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    Fetched,
    file_name,
    status_error,
)
from fovea.model_pod.weights.source_http import HttpReader

DEFAULT_S3_REGION = "us-east-1"
SIGNED_URL_SECONDS = 3600


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
