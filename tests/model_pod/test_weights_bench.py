"""bench/weights.py runs end to end on a small object (its figures are for people, not asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "weights.py"


def test_weights_bench_fetches_from_both_servers_and_then_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = importlib.util.spec_from_file_location("bench_weights", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_weights"] = bench
    spec.loader.exec_module(bench)
    assert (
        bench.main(["--size-gb", "0.01", "--repeats", "1", "--no-cluster", "--dir", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    for source in ("http", "s3"):
        assert f"{source}: curl " in out and "fetch into the cache" in out
        assert f"{source}: second fetch downloaded 0 bytes" in out
    assert "ratio" in out and "CPU seconds per GB" in out
