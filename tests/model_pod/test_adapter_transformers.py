"""Transformers models: offline honesty, random weights from a config, local weights, predict."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from fovea.model_pod.adapters.adapter_transformers import (
    BYTES_TOKENIZER,
    TransformersAdapter,
    architecture_config,
)
from fovea.model_pod.adapters.base import LoadError, ModelSpec, PredictError
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import FAILED, READY, ModelService


def loaded_service(identity: Identity) -> ModelService:
    service = ModelService(identity, TransformersAdapter(identity.spec), reporter=None)
    service.load()
    return service


def saved_weights_bytes(directory: Path) -> int:
    """Tensor bytes of a saved model: its safetensors files less their JSON headers."""
    total = 0
    for path in directory.glob("*.safetensors"):
        with path.open("rb") as handle:
            header = int.from_bytes(handle.read(8), "little")
        total += path.stat().st_size - 8 - header
    return total


@pytest.mark.parametrize("name", ["bert-tiny", "gpt2-tiny"])
def test_random_weights_measured_like_the_saved_weights(
    name: str, tmp_path: Path, make_identity: Callable[..., Identity]
) -> None:
    service = loaded_service(make_identity("transformers", f"org/{name}", architecture=name))
    assert service.state == READY, service.reason
    report = service.report
    assert report.random_weights is True
    reason = report.reason or ""
    assert "random weights" in reason and "not on disk" in reason and "offline" in reason
    # An independent figure: the bytes safetensors writes for the same model.
    assert service.adapter is not None
    service.adapter.module.save_pretrained(tmp_path)
    measured = (report.measured_memory_gb or 0) * 1024**3
    saved = saved_weights_bytes(tmp_path)
    assert saved > 0
    assert measured == pytest.approx(saved, rel=0.05)


def test_missing_model_without_random_weights_says_weights_are_not_on_disk(
    make_identity: Callable[..., Identity],
) -> None:
    identity = make_identity("transformers", "no-org/no-such-model", allow_random_weights=False)
    service = loaded_service(identity)
    assert service.state == FAILED
    assert service.reason == (
        "weights for 'no-org/no-such-model' are not on disk "
        "and the hub is offline (HF_HUB_OFFLINE=1)"
    )


def test_unreachable_hub_is_said_quickly(
    make_identity: Callable[..., Identity], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # A port nobody listens on: the connection is refused at once.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    identity = make_identity("transformers", "no-org/no-such-model", allow_random_weights=False)
    service = loaded_service(identity)
    assert service.state == FAILED
    assert "are not on disk and the hub (127.0.0.1) is unreachable" in (service.reason or "")


def test_random_weights_need_an_architecture(make_identity: Callable[..., Identity]) -> None:
    service = loaded_service(make_identity("transformers", "no-org/no-such-model"))
    assert service.state == FAILED
    assert "no architecture is named" in (service.reason or "")


def test_local_directory_loads_real_weights(tmp_path: Path) -> None:
    built = TransformersAdapter(
        ModelSpec("t", "x", architecture="bert-tiny", allow_random_weights=True)
    )
    built.load("cpu")
    built.module.save_pretrained(tmp_path)
    first = built.predict({"input_ids": [[1, 2, 3, 4]]})

    adapter = TransformersAdapter(ModelSpec("t", str(tmp_path)))
    loaded = adapter.load("cpu")
    assert loaded.random_weights is False
    assert str(tmp_path) in loaded.source
    second = adapter.predict({"input_ids": [[1, 2, 3, 4]]})
    assert second["shape"] == first["shape"] == [1, 4, 128]
    assert torch.allclose(
        torch.tensor(second["embeddings"]), torch.tensor(first["embeddings"]), atol=1e-5
    )


def test_text_without_a_tokenizer_uses_bytes_and_says_so() -> None:
    adapter = TransformersAdapter(
        ModelSpec("t", "x", architecture="bert-tiny", allow_random_weights=True)
    )
    adapter.load("cpu")
    adapter.warmup(2)
    answer = adapter.predict({"texts": ["a person walks", "a car"]})
    assert answer["tokenizer"] == BYTES_TOKENIZER
    assert len(answer["embeddings"]) == 2
    assert len(answer["embeddings"][0]) == 128
    with pytest.raises(PredictError, match="texts"):
        adapter.predict({"texts": [1, 2]})
    with pytest.raises(PredictError, match=r"input_ids must lie in"):
        adapter.predict({"input_ids": [[10**9]]})


def test_vision_model_takes_an_image(make_identity: Callable[..., Identity]) -> None:
    service = loaded_service(make_identity("transformers", "org/vit", architecture="vit-tiny"))
    assert service.state == READY, service.reason
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buffer, format="PNG")
    answer = service.predict({"image": base64.b64encode(buffer.getvalue()).decode()})
    assert answer["shape"] == [1, 197, 192]  # 14x14 patches and the class token
    with pytest.raises(PredictError, match="base64"):
        service.predict({"image": "not base64!"})


def test_architecture_config_sources(tmp_path: Path) -> None:
    assert architecture_config("bert-tiny").hidden_size == 128
    assert architecture_config("gpt2").model_type == "gpt2"  # a model_type's defaults
    config = architecture_config("bert-tiny")
    config.hidden_size = 64
    config.save_pretrained(tmp_path)
    assert architecture_config(str(tmp_path)).hidden_size == 64
    with pytest.raises(LoadError, match="unknown transformers architecture"):
        architecture_config("no-such-type")
