"""pvc:// and file:// weights: a local copy (the claim is mounted in the fetch container)."""

from __future__ import annotations

from pathlib import Path

from fovea.domain.weights import WeightsSource, local_source_path
from fovea.model_pod.weights.cache import directory_size
from fovea.model_pod.weights.download import Retry, copy_file, tree_files, tree_manifest
from fovea.model_pod.weights.errors import FetchError
from fovea.model_pod.weights.progress import Progress
from fovea.model_pod.weights.reader import Fetched, file_name


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
