"""bench/support.py, the benches' shared plumbing: its pure parts and its subprocesses."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

SUPPORT = Path(__file__).resolve().parents[2] / "bench" / "support.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_support", SUPPORT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_support"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


support = load()

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8000/api/models/status
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us   5.00ms   90.00%
    Req/Sec    10.00k     1.00k   12.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%    1.10ms
     90%    1.50ms
     99%    2.50ms
  20000 requests in 1.00s, 3.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  19990.00
Transfer/sec:      3.00MB
"""


def test_percentile_is_the_value_at_rank_q_times_n() -> None:
    values = [10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]
    assert support.percentile(values, 0.5) == 6.0  # rank int(0.5 * 10) = 5
    assert support.percentile(values, 0.99) == 10.0
    assert support.percentile(values, 0.0) == 1.0
    assert support.percentile([3.0], 0.95) == 3.0
    assert math.isnan(support.percentile([], 0.5))


def test_percentile_rounded_is_the_value_at_rank_q_times_n_less_one() -> None:
    values = [float(v) for v in range(1, 11)]
    assert support.percentile_rounded(values, 0.5) == 5.0  # rank round(4.5) = 4
    assert support.percentile_rounded(values, 0.95) == 10.0  # rank round(8.55) = 9
    assert support.percentile_rounded(values, 0.0) == 1.0
    assert support.percentile_rounded([3.0], 0.95) == 3.0
    assert math.isnan(support.percentile_rounded([], 0.5))


def test_wait_for_returns_the_first_truthy_value_and_counts_errors_as_not_yet() -> None:
    answers: list[object] = [OSError("not up"), 0, None, "there"]

    def check() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert support.wait_for(check, 60, 0) == "there"
    assert answers == []


def test_wait_for_gives_none_when_nothing_comes_and_lets_other_errors_through() -> None:
    assert support.wait_for(lambda: False, 0, 0) is None

    def broken() -> bool:
        raise ValueError("a bug in the check")

    with pytest.raises(ValueError, match="a bug in the check"):
        support.wait_for(broken, 60, 0)


def test_read_wrk_reads_the_figures_and_counts_every_error() -> None:
    run = support.read_wrk(WRK_OUTPUT)
    assert run == support.WrkRun(
        rps=19990.0, p50_ms=0.85, p99_ms=2.5, requests=20000, errors=4 + 1 + 2
    )
    clean = WRK_OUTPUT.replace("  Socket errors: connect 0, read 1, write 0, timeout 2\n", "")
    clean = clean.replace("  Non-2xx or 3xx responses: 4\n", "")
    assert support.read_wrk(clean).errors == 0


def test_read_wrk_refuses_an_output_without_its_percentiles() -> None:
    with pytest.raises(RuntimeError, match="cannot read wrk's output"):
        support.read_wrk(WRK_OUTPUT.replace("     99%    2.50ms\n", ""))


def test_bench_parser_keeps_the_docstring_or_its_first_paragraph() -> None:
    doc = "What it measures.\n\n    .venv/bin/python bench/x.py --size 1\n"
    assert support.bench_parser(doc).description == doc
    assert support.bench_parser(doc, summary=True).description == "What it measures."


def test_child_starts_logs_and_stops_its_process(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    argv = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(600)"]
    with support.Child(argv, {}, log, stop_timeout_s=20) as child:
        assert child.proc is not None and child.proc.poll() is None
        assert support.wait_for(lambda: "started" in log.read_text(), 60, 0.05)
    assert child.proc.returncode is not None  # stopped (SIGTERM) and reaped on the way out


def test_child_killed_without_waiting_is_reaped_by_stop(tmp_path: Path) -> None:
    child = support.Child(
        [sys.executable, "-c", "import time; time.sleep(600)"], {}, tmp_path / "l"
    )
    child.start()
    child.kill(wait=False)
    child.stop()
    assert child.proc is not None and child.proc.returncode == -9
    child.stop()  # again: nothing left to do


def test_selection_and_catalog_bodies() -> None:
    body = support.selection_body("det-selection", "det", "one")
    assert body["metadata"] == {"name": "det-selection"}
    assert body["spec"] == {"task": "det", "model": "one"}
    spec = support.numbered_catalog_spec(3)
    assert list(spec["tasks"]) == ["task_00", "task_01", "task_02"]
    assert support.catalog_body(spec)["spec"] is spec
