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

from collections.abc import Mapping

from fovea.domain.weights import WeightsSource
from fovea.model_pod.settings import get_settings
from fovea.model_pod.weights.reader import Reader


def reader_for(source: WeightsSource, env: Mapping[str, str] | None = None) -> Reader:
    """The reader of a parsed source (each imports its client library only when used)."""
    env = get_settings().variables() if env is None else env
    if source.scheme in ("http", "https"):
        from fovea.model_pod.weights.source_http import HttpReader

        return HttpReader(source)
    if source.scheme == "s3":
        from fovea.model_pod.weights.source_s3 import S3Reader

        return S3Reader(source, env)
    if source.scheme == "hf":
        from fovea.model_pod.weights.source_hf import HfReader

        return HfReader(source, env)
    from fovea.model_pod.weights.source_local import LocalReader

    return LocalReader(source)
