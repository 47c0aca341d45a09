"""hf:// weights: a hub repository through huggingface_hub (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE).

Online, `snapshot_download` writes into the cache's temporary directory (its
size known first from the hub's file list); offline, the snapshot is copied
out of the pod's own hub cache.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Mapping
from pathlib import Path

from fovea.domain.weights import WeightsSource
from fovea.model_pod.adapters.base import env_flag
from fovea.model_pod.weights.cache import directory_size
from fovea.model_pod.weights.download import Retry, copy_file, tree_files, tree_manifest
from fovea.model_pod.weights.errors import FetchError
from fovea.model_pod.weights.progress import Progress
from fovea.model_pod.weights.reader import Fetched, status_error


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
