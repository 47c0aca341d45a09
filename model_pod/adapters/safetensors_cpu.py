"""Reading a safetensors file into CPU tensors at the speed of a plain read.

The format is an 8-byte little-endian header length, a JSON header (name ->
dtype, shape, byte offsets) and the tensor bytes. Each tensor is allocated
once and the file read straight into it (`readinto`): one copy from the page
cache, as a raw read of the file does. The alternatives measured slower on
the CPU (bench/model_load.py): safetensors' `pread` backend goes through an
extra buffer (about half the raw rate); mmap plus a copy pays a page fault per
4 KiB; a bare mmap is instant only because it defers the reading to first
use and leaves the weights in evictable page cache.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import torch

from fovea.model_pod.adapters.base import LoadError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format's own limit


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, in memory they own; LoadError if the file is malformed."""
    size = path.stat().st_size
    with path.open("rb", buffering=0) as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise LoadError(f"{path} is not a safetensors file: too short")
        (header_bytes,) = struct.unpack("<Q", prefix)
        if header_bytes > min(MAX_HEADER_BYTES, size - 8):
            raise LoadError(f"{path} is not a safetensors file: bad header length")
        try:
            header = json.loads(handle.read(header_bytes))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoadError(f"{path} is not a safetensors file: {exc}") from exc
        data_start = 8 + header_bytes
        tensors: dict[str, torch.Tensor] = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            tensor, start, end = _allocate(path, name, meta, size - data_start)
            handle.seek(data_start + start)
            _read_into(handle, tensor, end - start, path)
            tensors[name] = tensor
    return tensors


def _allocate(path: Path, name: str, meta: object, data_size: int) -> tuple[torch.Tensor, int, int]:
    try:
        assert isinstance(meta, dict)
        dtype = DTYPES[meta["dtype"]]
        shape = [int(dim) for dim in meta["shape"]]
        start, end = (int(offset) for offset in meta["data_offsets"])
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise LoadError(f"{path}: tensor {name!r} has a malformed or unknown entry: {exc}") from exc
    tensor = torch.empty(shape, dtype=dtype)
    if not 0 <= start <= end <= data_size or end - start != tensor.numel() * tensor.element_size():
        raise LoadError(
            f"{path}: tensor {name!r} has offsets that do not fit its shape or the file"
        )
    return tensor, start, end


def _read_into(handle: io.FileIO, tensor: torch.Tensor, count: int, path: Path) -> None:
    if count == 0:
        return
    view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
    done = 0
    while done < count:
        got = handle.readinto(view[done:])
        if not got:
            raise LoadError(f"{path} ends early: truncated file")
        done += got
