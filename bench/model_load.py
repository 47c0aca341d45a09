"""Benchmark: loading safetensors weights on the CPU, next to a raw read of the same file.

For each size (default about 100 MB and 1 GB) a square `mlp:W,W` model's
weights (random float32) are written to a safetensors file in a temporary
directory. The raw read (`readinto` a fresh buffer, the physical limit of
getting the bytes into this process) and the model pod's own load path
(`TorchAdapter.load`: module built on the meta device, tensors read with
safetensors' `pread` backend into memory they own, assigned to the module)
are timed in turn `--repeats` times; the best of each is compared. Target:
load >= 0.8 of the raw read's GB/s.

Caches cannot be dropped without root, so the file is read once before
timing and both figures are for a warm page cache: they compare the cost
of the load path, not the disk.

    python bench/model_load.py                 # ~100 MB and ~1 GB
    python bench/model_load.py --sizes 20 --repeats 1
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 0.8
GB = 1e9


def width_for(megabytes: float) -> int:
    """The width W of a W x W float32 weight of about `megabytes` MB."""
    return max(2, int(math.sqrt(megabytes * 1e6 / 4)))


def write_weights(path: Path, width: int) -> int:
    """Write the state dict of `mlp:W,W` with random weights; return the file's size."""
    import torch
    from safetensors.torch import save_file

    save_file({"0.weight": torch.randn(width, width), "0.bias": torch.randn(width)}, path)
    return path.stat().st_size


def raw_read_seconds(path: Path, size: int) -> float:
    """Time reading the whole file into a fresh buffer (as loading must fill fresh memory)."""
    import torch

    buffer = torch.empty(size, dtype=torch.uint8)
    view = memoryview(buffer.numpy())
    started = time.perf_counter()
    with path.open("rb", buffering=0) as handle:
        done = 0
        while done < size:
            count = handle.readinto(view[done:])
            if not count:
                break
            done += count
    elapsed = time.perf_counter() - started
    del view, buffer
    return elapsed


def load_seconds(path: Path, width: int) -> float:
    """Time the model pod's load path for this file (TorchAdapter.load on the CPU)."""
    from fovea.model_pod.adapters.adapter_torch import TorchAdapter
    from fovea.model_pod.adapters.base import ModelSpec

    adapter = TorchAdapter(
        ModelSpec(task="bench", model_id=str(path), architecture=f"mlp:{width},{width}")
    )
    started = time.perf_counter()
    loaded = adapter.load("cpu")
    elapsed = time.perf_counter() - started
    assert not loaded.random_weights
    adapter.close()
    return elapsed


def verdict(ratio: float) -> str:
    """PASS when the load reaches the target share of the raw read's rate."""
    return "PASS" if ratio >= TARGET_RATIO else "FAIL"


def bench_size(directory: Path, megabytes: float, repeats: int) -> tuple[int, float, float]:
    """Bytes, best raw-read seconds and best load seconds for one size."""
    width = width_for(megabytes)
    path = directory / f"mlp-{width}.safetensors"
    size = write_weights(path, width)
    raw_read_seconds(path, size)  # warm the page cache: both timings below read from memory
    raw = load = math.inf
    for _ in range(repeats):  # interleaved: a busy machine slows both alike
        raw = min(raw, raw_read_seconds(path, size))
        load = min(load, load_seconds(path, width))
    path.unlink()
    return size, raw, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[100, 1000], help="sizes in MB")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("safetensors load vs raw read, CPU, warm page cache (caches cannot be dropped here)")
    header = f"{'file':>10}  {'raw read':>14}  {'model load':>14}  {'ratio':>6}"
    print(f"{header}  target >= {TARGET_RATIO}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="fovea-bench-") as tmp:
        for megabytes in args.sizes:
            size, raw, load = bench_size(Path(tmp), megabytes, args.repeats)
            raw_rate, load_rate = size / raw / GB, size / load / GB
            ratio = load_rate / raw_rate
            ok &= verdict(ratio) == "PASS"
            print(
                f"{size / 1e6:8.0f}MB  {raw_rate:8.2f} GB/s    {load_rate:8.2f} GB/s    "
                f"{ratio:5.2f}  {verdict(ratio)}"
                f"   (raw {raw * 1000:.0f} ms, load {load * 1000:.0f} ms)",
                flush=True,
            )
    print(f"overall: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
