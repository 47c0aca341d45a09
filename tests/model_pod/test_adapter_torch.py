"""Plain torch models: built from a named architecture, read from safetensors, served."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from fovea.domain.messages import LoadFailure
from fovea.model_pod.adapters.adapter_torch import (
    ARCHITECTURES,
    TorchAdapter,
    TorchArchitecture,
    architecture,
    mlp,
)
from fovea.model_pod.adapters.base import LoadError, PredictError
from fovea.model_pod.adapters.trust import ENV_TRUSTED_WEIGHTS_DIR
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import FAILED, READY, ModelService

MLP_TINY_BYTES = (64 * 256 + 256 + 256 * 10 + 10) * 4
RESNET18_PARAMETERS = 11_689_512  # torchvision's documented count


def loaded_service(identity: Identity) -> ModelService:
    service = ModelService(identity, TorchAdapter(identity.spec), reporter=None)
    service.load()
    return service


def test_mlp_tiny_random_weights_measured_like_its_parameters(
    make_identity: Callable[..., Identity],
) -> None:
    service = loaded_service(make_identity("pytorch", "mlp-tiny"))
    assert service.state == READY, service.reason
    report = service.report
    assert report.random_weights is True
    assert "random weights" in (report.reason or "")
    assert report.device == "cpu"
    measured = (report.measured_memory_gb or 0) * 1024**3
    assert measured == pytest.approx(MLP_TINY_BYTES, rel=0.05)
    assert report.load_time_seconds is not None and report.load_time_seconds >= 0
    assert report.memory_breakdown["rssGrowthGb"] >= 0


def test_resnet18_random_weights_measured_like_its_parameters(
    make_identity: Callable[..., Identity],
) -> None:
    service = loaded_service(make_identity("pytorch", "resnet-x", architecture="resnet18"))
    assert service.state == READY, service.reason
    measured = (service.report.measured_memory_gb or 0) * 1024**3
    assert measured == pytest.approx(RESNET18_PARAMETERS * 4, rel=0.05)
    answer = service.predict({"inputs": torch.zeros(1, 3, 224, 224).tolist()})
    assert answer["shape"] == [1, 1000]
    assert answer["randomWeights"] is True


def test_safetensors_file_loads_the_same_weights(tmp_path: Path) -> None:
    reference = mlp([64, 256, 10])
    path = tmp_path / "mlp.safetensors"
    save_file(reference.state_dict(), path)
    from fovea.model_pod.adapters.base import ModelSpec

    adapter = TorchAdapter(ModelSpec(task="t", model_id=str(path), architecture="mlp-tiny"))
    loaded = adapter.load("cpu")
    assert loaded.random_weights is False
    assert str(path) in loaded.source
    sample = torch.randn(3, 64)
    with torch.inference_mode():
        expected = reference(sample)
    answer = adapter.predict({"inputs": sample.tolist()})
    assert torch.allclose(torch.tensor(answer["outputs"]), expected, atol=1e-5)


def test_safetensors_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file(mlp([8, 4]).state_dict(), path)
    from fovea.model_pod.adapters.base import ModelSpec

    adapter = TorchAdapter(ModelSpec(task="t", model_id=str(path), architecture="mlp:8,16,4"))
    with pytest.raises(LoadError, match="does not match architecture"):
        adapter.load("cpu")


def test_torchscript_file(
    tmp_path: Path, make_identity: Callable[..., Identity], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_TRUSTED_WEIGHTS_DIR, str(tmp_path))  # a pickle: trusted files only
    path = tmp_path / "scripted.pt"
    torch.jit.script(mlp([64, 256, 10])).save(str(path))
    service = loaded_service(make_identity("pytorch", str(path), architecture="mlp-tiny"))
    assert service.state == READY, service.reason
    assert service.report.random_weights is False
    assert service.predict({"inputs": [[0.0] * 64]})["shape"] == [1, 10]


def test_missing_weights_without_random_weights_fail_with_the_reason(
    make_identity: Callable[..., Identity],
) -> None:
    identity = make_identity(
        "pytorch",
        "/models/missing.safetensors",
        architecture="mlp-tiny",
        allow_random_weights=False,
    )
    service = loaded_service(identity)
    assert service.state == FAILED
    assert service.report.state == "Failed"
    assert "not on disk" in (service.reason or "")
    assert "put the file at /models/missing.safetensors in the model-pod image" in (
        service.reason or ""
    )
    assert service.report.failure == LoadFailure.LOAD_ERROR


def test_unknown_architecture_is_a_bad_model_id(make_identity: Callable[..., Identity]) -> None:
    service = loaded_service(make_identity("pytorch", "no-such-net", architecture="no-such-net"))
    assert service.state == FAILED
    assert "unknown torch architecture 'no-such-net'" in (service.reason or "")


def test_absurd_size_ends_in_out_of_memory(make_identity: Callable[..., Identity]) -> None:
    # 10^14 float32 weights: 400 TB, more than any address space allows.
    service = loaded_service(make_identity("pytorch", "mlp:10000000,10000000"))
    assert service.state == FAILED
    assert (service.reason or "").startswith("Out of memory"), service.reason


def test_torch_out_of_memory_error_ends_in_out_of_memory(
    make_identity: Callable[..., Identity], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse() -> nn.Module:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setitem(ARCHITECTURES, "oom-net", TorchArchitecture("oom-net", refuse, (4,)))
    service = loaded_service(make_identity("pytorch", "oom-net"))
    assert service.state == FAILED
    assert service.report.reason == (
        "Out of memory: load failed: CUDA out of memory. Tried to allocate 20.00 GiB"
    )


def test_a_planned_gpu_that_is_absent_fails_rather_than_running_on_the_cpu(
    make_identity: Callable[..., Identity],
) -> None:
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, if there are any
    service = loaded_service(make_identity("pytorch", "mlp-tiny", device=absent))
    assert service.state == FAILED
    reason = service.reason or ""
    assert f"device {absent} was planned but this process sees" in reason


def test_simulated_gpu_runs_on_the_cpu_and_says_so(make_identity: Callable[..., Identity]) -> None:
    identity = make_identity("pytorch", "mlp-tiny", device="cuda:0", simulated_gpu=True)
    service = loaded_service(identity)
    assert service.state == READY, service.reason
    assert service.report.device == "cpu"
    assert service.report.simulated_gpu is True
    assert "GPU is simulated" in (service.report.reason or "")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "non-empty list"),
        ({"inputs": [[1.0, 2.0]]}, "shape [64]"),
        ({"inputs": [[1.0], [1.0, 2.0]]}, "rectangular"),
        ({"inputs": [["a"] * 64]}, "rectangular"),
    ],
)
def test_bad_predict_input_is_refused(payload: dict[str, object], message: str) -> None:
    from fovea.model_pod.adapters.base import ModelSpec

    adapter = TorchAdapter(ModelSpec(task="t", model_id="mlp-tiny", allow_random_weights=True))
    adapter.load("cpu")
    with pytest.raises(PredictError, match=None) as caught:
        adapter.predict(payload)
    assert message in str(caught.value)


def test_mlp_names() -> None:
    assert architecture("mlp:3,5,2").input_shape == (3,)
    with pytest.raises(LoadError, match="at least two"):
        architecture("mlp:3")
    with pytest.raises(LoadError, match="integers"):
        architecture("mlp:3,x")
