"""Weights that run code when loaded (pickles) are read only from the trusted model directory."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from fovea.model_pod.adapters.adapter_torch import TorchAdapter, architecture
from fovea.model_pod.adapters.adapter_ultralytics import UltralyticsAdapter
from fovea.model_pod.adapters.base import LoadError, ModelSpec
from fovea.model_pod.adapters.trust import ENV_TRUSTED_WEIGHTS_DIR, pickle_refusal, trusted_dir

RAN = "ran.txt"


class Payload:
    """A pickle that, when loaded, writes a file (what any code could do)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.target), "code ran"))  # type: ignore[return-value]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory outside the trusted one (which is `trusted/` next to it)."""
    (tmp_path / "trusted").mkdir()
    monkeypatch.setenv(ENV_TRUSTED_WEIGHTS_DIR, str(tmp_path / "trusted"))
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "elsewhere"


def test_the_trusted_directory_is_the_model_volume_unless_told() -> None:
    assert trusted_dir({}) == Path("/models").resolve()
    assert pickle_refusal(Path("/models/a.pt"), "a pickle", {}) is None
    refusal = pickle_refusal(Path("/tmp/a.pt"), "a pickle", {})
    assert refusal is not None and "runs code when loaded" in refusal


def test_a_symlink_into_the_trusted_directory_does_not_make_a_file_trusted(
    elsewhere: Path,
) -> None:
    target = elsewhere / "evil.pt"
    target.write_bytes(b"x")
    link = elsewhere.parent / "trusted" / "link.pt"
    link.symlink_to(target)
    assert pickle_refusal(link, "a pickle") is not None


def test_torchscript_outside_the_trusted_directory_is_refused_with_the_reason(
    elsewhere: Path,
) -> None:
    path = elsewhere / "scripted.pt"
    torch.jit.script(nn.Linear(64, 10)).save(str(path))
    with pytest.raises(LoadError, match="runs code when loaded"):
        TorchAdapter(ModelSpec(task="t", model_id=str(path))).load("cpu")


def test_a_state_dict_outside_it_loads_with_weights_only(elsewhere: Path) -> None:
    reference = architecture("mlp-tiny").build()
    path = elsewhere / "weights.pt"
    torch.save(reference.state_dict(), path)
    adapter = TorchAdapter(ModelSpec(task="t", model_id=str(path), architecture="mlp-tiny"))
    loaded = adapter.load("cpu")
    assert loaded.random_weights is False
    sample = torch.randn(2, 64)
    with torch.inference_mode():
        expected = reference(sample)
    got = torch.tensor(adapter.predict({"inputs": sample.tolist()})["outputs"])
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_pickle_with_code_outside_it_is_refused_and_runs_nothing(elsewhere: Path) -> None:
    path = elsewhere / "evil.pt"
    path.write_bytes(pickle.dumps(Payload(elsewhere / RAN)))
    adapter = TorchAdapter(ModelSpec(task="t", model_id=str(path), architecture="mlp-tiny"))
    with pytest.raises(LoadError, match="not a plain state dict"):
        adapter.load("cpu")
    assert not (elsewhere / RAN).exists()


def test_an_ultralytics_checkpoint_outside_it_is_refused_and_runs_nothing(
    elsewhere: Path,
) -> None:
    path = elsewhere / "detector.pt"
    path.write_bytes(pickle.dumps(Payload(elsewhere / RAN)))
    with pytest.raises(LoadError, match="ultralytics checkpoint"):
        UltralyticsAdapter(ModelSpec("t", str(path))).load("cpu")
    assert not (elsewhere / RAN).exists()
