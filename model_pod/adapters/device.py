"""Checking that the planned device exists before anything is put on it."""

from __future__ import annotations

from typing import Any

from fovea.model_pod.adapters.base import LoadError, PredictError


def check_device(device: str) -> Any:
    """Return `torch.device(device)`, or raise LoadError if this process cannot use it.

    A pod planned onto `cuda:N` that sees no such GPU must fail with that
    reason rather than quietly run on the CPU.
    """
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if not device.startswith("cuda"):
        raise LoadError(f"unknown device {device!r}: expected 'cpu' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise LoadError(f"device {device} was planned but this process sees no CUDA GPU")
    target = torch.device(device)
    index = target.index or 0
    count = torch.cuda.device_count()
    if index >= count:
        raise LoadError(f"device {device} was planned but this process sees {count} GPU(s)")
    return target


def decode_image(payload: dict[str, Any]) -> Any:
    """A PIL image from `{"image": "<base64>"}` or raw bytes under `"image_bytes"`."""
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    raw = payload.get("image_bytes")
    if raw is None:
        encoded = payload.get("image")
        if not isinstance(encoded, str) or not encoded:
            raise PredictError('expected {"image": "<base64-encoded image>"} or raw image bytes')
        if encoded.startswith("data:") and "," in encoded:
            encoded = encoded.split(",", 1)[1]  # a data URL: keep the base64 part
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PredictError(f"image is not valid base64: {exc}") from exc
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    # ImportError: ultralytics patches Image.open to import a HEIF plugin for unknown formats.
    except (UnidentifiedImageError, OSError, ImportError, ValueError) as exc:
        raise PredictError(f"image could not be decoded: {exc}") from exc
    return image.convert("RGB")
