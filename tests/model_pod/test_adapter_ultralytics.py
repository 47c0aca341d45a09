"""YOLO detectors: built from config without any download, real weights from a .pt file."""

from __future__ import annotations

import base64
import io
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fovea.model_pod.adapters.adapter_ultralytics import UltralyticsAdapter, config_for
from fovea.model_pod.adapters.base import ModelSpec, PredictError
from fovea.model_pod.adapters.trust import ENV_TRUSTED_WEIGHTS_DIR
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import FAILED, READY, ModelService

# yolov8n with 80 classes: 3,157,200 parameters (3,151,904 once Conv+BN are fused).
YOLOV8N_PARAMETERS = 3_157_200


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Record (and refuse) every attempt to reach anything but this machine."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(("connect", address))
            raise OSError("network refused by the test")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "127.0.0.1", "::1", "localhost"):
            attempts.append(("resolve", host))
            raise socket.gaierror("name resolution refused by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts


def png(width: int = 96, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_built_from_config_without_touching_the_network(
    no_network: list[Any], make_identity: Callable[..., Identity]
) -> None:
    identity = make_identity("ultralytics", "/models/yolov8n.pt")
    service = ModelService(identity, UltralyticsAdapter(identity.spec), reporter=None)
    service.load()
    assert service.state == READY, service.reason
    assert no_network == []
    report = service.report
    assert report.random_weights is True
    assert "built from yolov8n.yaml" in (report.reason or "")
    measured = (report.measured_memory_gb or 0) * 1024**3
    assert measured == pytest.approx(YOLOV8N_PARAMETERS * 4, rel=0.05)

    answer = service.predict({"image": base64.b64encode(png()).decode()})
    assert answer["imageSize"] == [96, 64]
    assert isinstance(answer["detections"], list)
    for detection in answer["detections"]:
        assert set(detection) == {"box", "score", "label"}
        assert len(detection["box"]) == 4
    raw = service.predict({"image_bytes": png(), "confidence": 0.0})
    # At confidence 0 an untrained head still proposes boxes: the output path is exercised.
    assert raw["detections"], "no boxes at confidence 0"
    first = raw["detections"][0]
    assert 0 <= first["box"][0] <= first["box"][2] <= 96
    assert no_network == []


def test_a_pt_file_loads_its_real_weights(
    tmp_path: Path, no_network: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_TRUSTED_WEIGHTS_DIR, str(tmp_path))  # a pickle: trusted files only
    built = UltralyticsAdapter(ModelSpec("t", "yolov8n.yaml", allow_random_weights=True))
    built.load("cpu")
    path = tmp_path / "detector.pt"
    built.yolo.save(str(path))

    adapter = UltralyticsAdapter(ModelSpec("t", str(path)))
    loaded = adapter.load("cpu")
    assert loaded.random_weights is False
    assert loaded.source == f"weights from {path}"
    adapter.warmup(1)
    original = built.predict({"image_bytes": png(), "confidence": 0.0})["detections"]
    reloaded = adapter.predict({"image_bytes": png(), "confidence": 0.0})["detections"]
    assert original[:5] == reloaded[:5]
    assert no_network == []


def test_missing_weights_fail_without_downloading(
    no_network: list[Any], make_identity: Callable[..., Identity]
) -> None:
    identity = make_identity("ultralytics", "yolov8n.pt", allow_random_weights=False)
    service = ModelService(identity, UltralyticsAdapter(identity.spec), reporter=None)
    service.load()
    assert service.state == FAILED
    reason = service.reason or ""
    assert "the .pt weights file is not on disk" in reason and "downloads are off" in reason
    # It says where the file goes, and the other way: a weights source to fetch it from.
    assert "put the file at " in reason and "yolov8n.pt in the model-pod image" in reason
    assert "`weights:` source" in reason
    assert no_network == []


def test_unknown_config_is_a_bad_model_id(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("ultralytics", "yolo-nonsense.pt")
    service = ModelService(identity, UltralyticsAdapter(identity.spec), reporter=None)
    service.load()
    assert service.state == FAILED
    assert "yolo-nonsense.yaml" in (service.reason or "")


def test_config_for() -> None:
    assert config_for(ModelSpec("t", "/m/yolo11s.pt")) == "yolo11s.yaml"
    assert config_for(ModelSpec("t", "yolov8n.yaml")) == "yolov8n.yaml"
    assert config_for(ModelSpec("t", "x.pt", architecture="yolov8s.yaml")) == "yolov8s.yaml"
    assert config_for(ModelSpec("t", "detector")) is None


def test_bad_images_are_refused() -> None:
    adapter = UltralyticsAdapter(ModelSpec("t", "yolov8n.yaml", allow_random_weights=True))
    adapter.load("cpu")
    with pytest.raises(PredictError, match="could not be decoded"):
        adapter.predict({"image_bytes": b"not an image"})
    with pytest.raises(PredictError, match="expected"):
        adapter.predict({})
    with pytest.raises(PredictError, match="confidence"):
        adapter.predict({"image_bytes": png(), "confidence": 2})
