"""The model pod loads fetched weights from FOVEA_WEIGHTS_PATH, and holds them while it serves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from fovea.domain import constants as c
from fovea.domain.units import GIB
from fovea.domain.weights import ENV_WEIGHTS_PATH, cache_key, parse_weights_uri
from fovea.model_pod.adapters.adapter_torch import TorchAdapter, mlp
from fovea.model_pod.adapters.base import ModelSpec, single_weights_file, weights_location
from fovea.model_pod.identity import IdentityError, identity_from_env
from fovea.model_pod.main import _hold_weights
from fovea.model_pod.weights.cache import WeightsCache
from fovea.model_pod.weights.download import Retry
from fovea.model_pod.weights.fetcher import FetchRequest, fetch_weights
from fovea.model_pod.weights.progress import CACHED, ProgressReporter
from weight_servers import HttpFileServer, write_random_file


def fetched_entry(uri: str, cache: Path, size_gb: float | None = None) -> Path:
    request = FetchRequest(uri, cache, None, size_gb, Retry(attempts=2, base_seconds=0.01))
    assert fetch_weights(request, ProgressReporter(None, uri)).phase == CACHED
    return cache / cache_key(parse_weights_uri(uri), None)


def test_torch_adapter_loads_the_fetched_file_instead_of_the_model_id(tmp_path: Path) -> None:
    reference = mlp([64, 256, 10])
    (tmp_path / "www").mkdir()
    save_file(reference.state_dict(), tmp_path / "www" / "mlp.safetensors")
    with HttpFileServer(tmp_path / "www") as server:
        entry = fetched_entry(f"{server.url}/mlp.safetensors", tmp_path / "cache")
    spec = ModelSpec(
        task="t", model_id="acme/mlp-from-http", architecture="mlp-tiny", weights_path=str(entry)
    )
    adapter = TorchAdapter(spec)
    loaded = adapter.load("cpu")
    assert loaded.random_weights is False
    assert loaded.source == f"weights from {entry / 'mlp.safetensors'}"
    sample = torch.randn(2, 64)
    with torch.inference_mode():
        expected = reference(sample)
    answer = adapter.predict({"inputs": sample.tolist()})
    assert torch.allclose(torch.tensor(answer["outputs"]), expected, atol=1e-5)


def test_weights_location_picks_the_file_or_the_directory(tmp_path: Path) -> None:
    entry = tmp_path / "entry"
    (entry / "sub").mkdir(parents=True)
    (entry / "model.safetensors").write_bytes(b"x")
    (entry / "config.json").write_text("{}")
    spec = ModelSpec(task="t", model_id="m", weights_path=str(entry))
    assert weights_location(spec, want_file=True) == str(entry / "model.safetensors")
    assert weights_location(spec, want_file=False) == str(entry)
    assert weights_location(ModelSpec(task="t", model_id="m"), want_file=True) == "m"
    (entry / "other.pt").write_bytes(b"y")
    assert single_weights_file(entry) is None  # two weights files: the directory is passed
    assert weights_location(spec, want_file=True) == str(entry)


def test_identity_reads_the_weights_path(tmp_path: Path) -> None:
    env = {
        c.ENV_FRAMEWORK: "pytorch",
        c.ENV_TASK: "t",
        c.ENV_MODEL_ID: "acme/x",
        ENV_WEIGHTS_PATH: str(tmp_path / "entry"),
    }
    assert identity_from_env(env).spec.weights_path == str(tmp_path / "entry")
    with pytest.raises(IdentityError, match="must be an absolute path"):
        identity_from_env({**env, ENV_WEIGHTS_PATH: "relative/entry"})
    without = {k: v for k, v in env.items() if k != ENV_WEIGHTS_PATH}
    assert identity_from_env(without).spec.weights_path is None


def test_the_model_process_holds_its_entry_against_eviction(tmp_path: Path) -> None:
    """What `fovea-models model-pod` does at start; a later fetch cannot evict the entry."""
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        write_random_file(tmp_path / "src" / f"{name}.safetensors", 1 << 20)
    limit_gb = 1.5 * (1 << 20) / GIB
    entry_a = fetched_entry(f"file://{tmp_path}/src/a.safetensors", cache, limit_gb)
    held = _hold_weights(str(entry_a))
    try:
        request = FetchRequest(
            f"file://{tmp_path}/src/b.safetensors", cache, None, limit_gb, Retry(attempts=1)
        )
        outcome = fetch_weights(request, ProgressReporter(None, request.uri))
        assert "cache full" in outcome.message
    finally:
        held.release()
    assert [e.key for e in WeightsCache(cache).entries()] == [entry_a.name]
    # Released: the next fetch may evict it.
    entry_b = fetched_entry(f"file://{tmp_path}/src/b.safetensors", cache, limit_gb)
    assert [e.key for e in WeightsCache(cache).entries()] == [entry_b.name]


def test_the_model_process_refuses_an_entry_that_is_not_complete(tmp_path: Path) -> None:
    from fovea.model_pod.adapters.base import LoadError

    (tmp_path / "cache" / "hf-x-0123").mkdir(parents=True)
    with pytest.raises(LoadError, match="not a complete weights cache entry"):
        _hold_weights(str(tmp_path / "cache" / "hf-x-0123"))
