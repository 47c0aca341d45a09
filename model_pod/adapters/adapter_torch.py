"""Plain torch models: a named architecture, a safetensors file, or a TorchScript file.

- `model_id` a `.safetensors` path: the tensors are read straight into a module
  of the named architecture (built on the meta device, so no memory is spent
  on initial weights that would be overwritten; see `safetensors_cpu`).
- `model_id` any other existing file: TorchScript (`torch.jit.load`) from the
  trusted model directory only (see `trust`); elsewhere, with an architecture
  named, a plain state dict read with `torch.load(weights_only=True)`.
- otherwise: with random weights allowed, the architecture (`architecture`, or
  `model_id` itself when it names one) is built untrained, and says so.

Architectures: `mlp-tiny`, `mlp:IN,HIDDEN,...,OUT` (Linear layers with ReLU
between), `resnet18` (torchvision, weights=None).

Predict: `{"inputs": [[...], ...]}` (a batch of samples of the architecture's
input shape) -> `{"outputs": [...], "shape": [...]}`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fovea.domain.messages import missing_weights
from fovea.model_pod.adapters.base import (
    LoadedModel,
    LoadError,
    ModelSpec,
    PredictError,
    weights_location,
)
from fovea.model_pod.adapters.device import check_device
from fovea.model_pod.adapters.safetensors_cpu import read_safetensors
from fovea.model_pod.adapters.trust import pickle_refusal

MAX_PREDICT_BATCH = 64


@dataclass(frozen=True)
class TorchArchitecture:
    """A buildable module and the shape of one input sample (no batch dimension)."""

    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


def mlp(sizes: list[int]) -> nn.Module:
    """Linear layers of the given widths with ReLU between them."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(sizes)):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(width_in, width_out))
    return nn.Sequential(*layers)


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18  # type: ignore[import-untyped]

    model: nn.Module = resnet18(weights=None)
    return model


ARCHITECTURES: dict[str, TorchArchitecture] = {
    "mlp-tiny": TorchArchitecture("mlp-tiny", lambda: mlp([64, 256, 10]), (64,)),
    "resnet18": TorchArchitecture("resnet18", _resnet18, (3, 224, 224)),
}


def parse_mlp(name: str) -> list[int] | None:
    """Widths of an `mlp:IN,HIDDEN,...,OUT` name, None if `name` is not one."""
    if not name.startswith("mlp:"):
        return None
    try:
        sizes = [int(part) for part in name[4:].split(",")]
    except ValueError as exc:
        raise LoadError(f"architecture {name!r}: widths must be integers") from exc
    if len(sizes) < 2 or min(sizes) < 1:
        raise LoadError(f"architecture {name!r}: needs at least two positive widths")
    return sizes


def architecture(name: str) -> TorchArchitecture:
    """Look up a named architecture, or raise LoadError naming the known ones."""
    sizes = parse_mlp(name)
    if sizes is not None:
        return TorchArchitecture(name, lambda: mlp(sizes), (sizes[0],))
    known = ARCHITECTURES.get(name)
    if known is None:
        names = ", ".join([*sorted(ARCHITECTURES), "mlp:IN,...,OUT"])
        raise LoadError(f"unknown torch architecture {name!r}; known: {names}")
    return known


def is_architecture_name(name: str) -> bool:
    return name in ARCHITECTURES or name.startswith("mlp:")


def load_safetensors_module(path: Path, arch: TorchArchitecture, device: torch.device) -> nn.Module:
    """Read a safetensors file into a module of `arch` on `device`.

    On the CPU the tensors are read straight into memory they own
    (`safetensors_cpu`, at the speed of a raw read); on CUDA safetensors
    copies them to the device as it reads.
    """
    with torch.device("meta"):
        module = arch.build()
    if device.type == "cpu":
        state = read_safetensors(path)
    else:
        from safetensors.torch import load_file

        state = load_file(path, device=str(device))
    try:
        result = module.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # same names, other shapes
        raise LoadError(f"{path} does not match architecture {arch.name!r}: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise LoadError(
            f"{path} does not match architecture {arch.name!r}: "
            f"missing {sorted(result.missing_keys)[:5]}, "
            f"unexpected {sorted(result.unexpected_keys)[:5]}"
        )
    return module


class TorchAdapter:
    """Loads and serves one plain torch module."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.module: nn.Module | None = None
        self.device = torch.device("cpu")
        self.input_shape: tuple[int, ...] | None = None

    def load(self, device: str) -> LoadedModel:
        self.device = check_device(device)
        spec = self.spec
        path = Path(weights_location(spec, want_file=True))
        arch_name = spec.architecture or (
            spec.model_id if is_architecture_name(spec.model_id) else None
        )
        arch = architecture(arch_name) if arch_name else None
        self.input_shape = arch.input_shape if arch else None
        if path.is_file():
            if path.suffix == ".safetensors":
                if arch is None:
                    raise LoadError(f"{path} holds tensors only: name its architecture to load it")
                module = load_safetensors_module(path, arch, self.device)
            else:
                module = self._load_pickled(path, arch)
            source = f"weights from {path}"
            random_weights = False
        elif spec.allow_random_weights and arch is not None:
            with self.device:
                module = arch.build()
            why = "no weights file" if arch_name == spec.model_id else f"{path} is not on disk"
            source = f"random weights: built from architecture {arch.name!r} ({why})"
            random_weights = True
        else:
            raise LoadError(self._missing_reason(path, arch_name))
        self.module = module.eval()
        return LoadedModel(device=str(self.device), random_weights=random_weights, source=source)

    def _load_pickled(self, path: Path, arch: TorchArchitecture | None) -> nn.Module:
        """TorchScript from the trusted directory; elsewhere only a state dict of tensors."""
        refusal = pickle_refusal(path, "a TorchScript archive or a pickle")
        if refusal is None:
            scripted: nn.Module = torch.jit.load(str(path), map_location=self.device)
            return scripted
        if arch is None:
            raise LoadError(refusal)
        try:  # weights_only: tensors and plain containers, never code
            state = torch.load(str(path), map_location=self.device, weights_only=True)
            with self.device:
                module = arch.build()
            module.load_state_dict(state)
        except Exception as exc:
            raise LoadError(f"{refusal} ({path} is not a plain state dict: {exc})") from exc
        return module

    def _missing_reason(self, path: Path, arch_name: str | None) -> str:
        if self.spec.allow_random_weights:
            return (
                f"weights for {self.spec.model_id!r} are not on disk and no architecture "
                "is named to build it with random weights"
            )
        hint = (
            f", or set allow_random_weights to build {arch_name!r} with random weights"
            if arch_name
            else ""
        )
        return missing_weights(
            f"weights for {self.spec.model_id!r} are",
            str(path.absolute()),  # where the pod looked, whatever its working directory
            " and plain torch models have no hub to fetch them from",
            hint,
        )

    def _require(self) -> nn.Module:
        if self.module is None:
            raise RuntimeError("model not loaded")
        return self.module

    def warmup(self, batch_size: int) -> None:
        if self.input_shape is None:
            return  # TorchScript without a named architecture: no known input shape
        sample = torch.randn(batch_size, *self.input_shape, device=self.device)
        with torch.inference_mode():
            self._require()(sample)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        module = self._require()
        inputs = payload.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise PredictError('expected {"inputs": [sample, ...]}, a non-empty list')
        try:
            batch = torch.tensor(inputs, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise PredictError(f"inputs are not a rectangular list of numbers: {exc}") from exc
        if self.input_shape is not None and tuple(batch.shape[1:]) != self.input_shape:
            raise PredictError(
                f"each sample must have shape {list(self.input_shape)}, got {list(batch.shape[1:])}"
            )
        if batch.shape[0] > MAX_PREDICT_BATCH:
            raise PredictError(f"at most {MAX_PREDICT_BATCH} samples per request")
        with torch.inference_mode():
            output = module(batch.to(self.device))
        if not isinstance(output, torch.Tensor):
            raise PredictError("the model's output is not a single tensor")
        return {"outputs": output.float().cpu().tolist(), "shape": list(output.shape)}

    def failure(self) -> str | None:
        return None  # in-process: a failure here ends the process itself

    def close(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
