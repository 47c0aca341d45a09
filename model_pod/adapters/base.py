"""What every framework adapter offers, and the errors loading may end in.

An adapter turns a `ModelSpec` into a model on a device (`load`), runs it once
at the configured batch size (`warmup`), answers `predict` and frees it
(`close`). Only the standard library is imported here: the GPU memory check
runs where pydantic and kubernetes are not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Size of the synthetic sequences that warm up text models.
WARMUP_SEQUENCE_LENGTH = 16


@dataclass(frozen=True)
class ModelSpec:
    """What to load, independent of where it runs."""

    task: str
    model_id: str
    architecture: str | None = None
    allow_random_weights: bool = False
    batch_size: int = 1
    declared_vram_gb: float | None = None
    # The fetched weights' cache entry (FOVEA_WEIGHTS_PATH): loaded from there, not the hub.
    weights_path: str | None = None


# A cache entry holding one of these (and other files) names the file to load.
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ts", ".torchscript")


def single_weights_file(directory: Path) -> Path | None:
    """The one file of a directory, or its one weights file among others; else None."""
    try:
        files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return None
    if len(files) == 1:
        return files[0]
    weights = [p for p in files if p.suffix in WEIGHT_FILE_SUFFIXES]
    return weights[0] if len(weights) == 1 else None


def weights_location(spec: ModelSpec, want_file: bool) -> str:
    """What an adapter loads: the fetched cache entry when there is one, else `model_id`.

    `want_file`: the framework loads one file (torch, ultralytics): the entry's
    one weights file; otherwise (transformers, engines) the entry's directory.
    """
    if not spec.weights_path:
        return spec.model_id
    entry = Path(spec.weights_path)
    if want_file and entry.is_dir():
        found = single_weights_file(entry)
        if found is not None:
            return str(found)
    return str(entry)


@dataclass
class LoadedModel:
    """A model on its device, and the facts about how it got there.

    `pid` is the process that holds the model's memory when it is not this
    one (an engine's server); None for in-process models.
    """

    device: str
    random_weights: bool
    source: str  # where the weights came from, said plainly
    pid: int | None = None
    notes: list[str] = field(default_factory=list)


class LoadError(RuntimeError):
    """The model cannot be loaded; the message is the reason users see."""


class PredictError(ValueError):
    """The predict input is malformed; the message says how."""


class Adapter(Protocol):
    """A framework's way of loading, warming up and running one model.

    An adapter may also have `prepare()`: import its framework before any model, so the
    status tells the runtime's imports (RuntimeReady) apart from the load (Loaded).
    """

    @property
    def module(self) -> Any:
        """The torch module holding the served weights (None for engines in a child process)."""
        ...

    def load(self, device: str) -> LoadedModel:
        """Load the model onto `device` ("cpu" or "cuda:N"); raise LoadError if it cannot."""
        ...

    def warmup(self, batch_size: int) -> None:
        """Run one forward pass at `batch_size` so the first request is not the slow one."""
        ...

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (documented per adapter); raise PredictError on bad input."""
        ...

    def failure(self) -> str | None:
        """Why a loaded model stopped serving (an engine's server died), else None."""
        ...

    def close(self) -> None:
        """Free the model (and stop any child process)."""
        ...


def env_flag(value: str | None) -> bool:
    """Read a boolean environment value: 1/true/yes/on (any case) are true."""
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}
