"""Ultralytics YOLO detectors, with nothing fetched from the network.

- `model_id` an existing `.pt` file: its trained weights.
- `model_id` a missing `.pt` (or a `.yaml`) with random weights allowed: the
  model is built from its config (`architecture`, else `<stem>.yaml`, one of
  the configs the ultralytics package ships) and says so.
- a missing `.pt` otherwise: Failed. Ultralytics would try to download it;
  this adapter refuses before it can.

Ultralytics also fetches fonts, reports telemetry and pip-installs optional
packages when it thinks it is online; it is told it is offline
(`YOLO_OFFLINE=1`, `ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS=1`, unless set) and
given a private settings directory, before it is imported.

Predict: `{"image": "<base64>"}` (or raw image bytes in the request body),
optionally `"confidence"` (default 0.25) -> `{"detections": [{"box": [x1, y1,
x2, y2], "score": s, "label": name}, ...]}` in pixels of the input image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fovea.domain.messages import missing_weights
from fovea.model_pod.adapters.base import (
    LoadedModel,
    LoadError,
    ModelSpec,
    PredictError,
    weights_location,
)
from fovea.model_pod.adapters.device import check_device, decode_image
from fovea.model_pod.adapters.trust import pickle_refusal
from fovea.model_pod.settings import set_library_defaults

WARMUP_IMAGE_SIZE = 640
DEFAULT_CONFIDENCE = 0.25


def prepare_environment() -> None:
    """Keep ultralytics offline and its settings out of the home directory."""
    set_library_defaults(
        {
            "YOLO_OFFLINE": "1",
            # Otherwise it pip-installs missing optional packages at run time, in a pod.
            "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS": "1",
            "YOLO_VERBOSE": "False",
            "YOLO_CONFIG_DIR": str(Path(tempfile.gettempdir()) / "fovea-ultralytics"),
        }
    )


def config_for(spec: ModelSpec) -> str | None:
    """The config to build from when the weights are missing, if one can be named."""
    if spec.architecture:
        return spec.architecture
    path = Path(spec.model_id)
    if path.suffix in {".yaml", ".yml"}:
        return spec.model_id
    if path.suffix == ".pt":
        return f"{path.stem}.yaml"
    return None


class UltralyticsAdapter:
    """Loads and serves one YOLO model."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.yolo: Any = None
        self.device = "cpu"

    def prepare(self) -> None:
        """Import the framework, before any model (the runtime's share of a load)."""
        prepare_environment()
        import ultralytics  # noqa: F401

    def load(self, device: str) -> LoadedModel:
        self.device = str(check_device(device))
        prepare_environment()
        from ultralytics import YOLO  # type: ignore[attr-defined]  # not re-exported explicitly

        path = Path(weights_location(self.spec, want_file=True))
        if path.is_file() and path.suffix == ".pt":
            # Its checkpoints pickle the model's classes: no weights_only load exists.
            refusal = pickle_refusal(path, "an ultralytics checkpoint (a pickle)")
            if refusal is not None:
                raise LoadError(refusal)
            yolo = YOLO(str(path))
            source = f"weights from {path}"
            random_weights = False
        else:
            config = config_for(self.spec)
            if not self.spec.allow_random_weights or config is None:
                raise LoadError(self._missing_reason(path, config))
            try:
                yolo = YOLO(config)
            except FileNotFoundError as exc:
                raise LoadError(f"YOLO config {config!r} is not known: {exc}") from exc
            source = f"random weights: built from {config} ({path} is not on disk)"
            random_weights = True
        yolo.to(self.device)
        self.yolo = yolo
        return LoadedModel(device=self.device, random_weights=random_weights, source=source)

    def _missing_reason(self, path: Path, config: str | None) -> str:
        if self.spec.allow_random_weights:
            return (
                f"weights {path} are not on disk and no YOLO config is named "
                "to build it with random weights"
            )
        hint = (
            f", or set allow_random_weights to build {config} with random weights" if config else ""
        )
        return missing_weights(
            "the .pt weights file is",
            str(path.absolute()),
            " and downloads are off (offline)",
            hint,
        )

    def _require(self) -> Any:
        if self.yolo is None:
            raise RuntimeError("model not loaded")
        return self.yolo

    def _run(self, images: list[Any], confidence: float = DEFAULT_CONFIDENCE) -> list[Any]:
        # The same setup arguments every call, so ultralytics keeps its predictor.
        return list(
            self._require().predict(images, device=self.device, conf=confidence, verbose=False)
        )

    def warmup(self, batch_size: int) -> None:
        from PIL import Image

        blank = Image.new("RGB", (WARMUP_IMAGE_SIZE, WARMUP_IMAGE_SIZE))
        self._run([blank] * batch_size)
        self._drop_unfused_copy()

    def _drop_unfused_copy(self) -> None:
        """Serve from one copy of the weights.

        The first predict deep-copies the model and fuses Conv+BatchNorm in the
        copy; the unfused original would otherwise stay in memory for nothing.
        """
        yolo = self._require()
        backend = getattr(getattr(yolo.predictor, "model", None), "backend", None)
        served = getattr(backend, "model", None)
        if served is not None and served is not yolo.model:
            yolo.model = served

    @property
    def module(self) -> Any:
        """The torch module that holds the served weights."""
        return None if self.yolo is None else self.yolo.model

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        image = decode_image(payload)
        confidence = payload.get("confidence", DEFAULT_CONFIDENCE)
        if not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
            raise PredictError("confidence must be a number in [0, 1]")
        result = self._run([image], float(confidence))[0]
        names = result.names
        boxes = result.boxes
        detections = [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "label": str(names.get(int(label), int(label))),
            }
            for box, score, label in zip(
                boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
            )
        ]
        return {"detections": detections, "imageSize": [image.width, image.height]}

    def failure(self) -> str | None:
        return None  # in-process: a failure here ends the process itself

    def close(self) -> None:
        self.yolo = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
