"""The CPU safetensors reader: same tensors as the reference library, clear errors otherwise."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fovea.model_pod.adapters.base import LoadError
from fovea.model_pod.adapters.safetensors_cpu import read_safetensors


def test_reads_what_the_reference_library_reads(tmp_path: Path) -> None:
    tensors = {
        "f32": torch.randn(3, 5),
        "f16": torch.randn(7).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "i64": torch.arange(6).reshape(2, 3),
        "flags": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    ours = read_safetensors(path)
    reference = load_file(path)
    assert set(ours) == set(reference) == set(tensors)
    for name, tensor in reference.items():
        assert ours[name].dtype == tensor.dtype and ours[name].shape == tensor.shape
        assert torch.equal(ours[name], tensor), name


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file({"w": torch.randn(100)}, path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(LoadError, match=r"do not fit|truncated"):
        read_safetensors(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"abc", "too short"),
        (struct.pack("<Q", 10**12) + b"{}", "bad header length"),
        (struct.pack("<Q", 5) + b"{nope", "is not a safetensors file"),
    ],
)
def test_malformed_headers_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=message):
        read_safetensors(path)


def test_unknown_dtype_is_refused(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}}).encode()
    path = tmp_path / "q4.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0")
    with pytest.raises(LoadError, match="malformed or unknown entry"):
        read_safetensors(path)
