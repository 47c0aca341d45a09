"""`select --wait` progress: the stage of a load (pure), bars on a terminal, lines elsewhere."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from fovea.usercli.progress import FETCHING, LOADING, WAITING, Stage, WaitDisplay, stage_of


def _view(status: dict[str, Any], generation: int = 2) -> dict[str, Any]:
    return {"generation": generation, "status": {"observedGeneration": 2, **status}}


def _fetching(done: int, total: int | None) -> dict[str, Any]:
    weights = {"phase": "Fetching", "bytesDone": done, "bytesPerSecond": 2e6}
    if total is not None:
        weights["bytesTotal"] = total
    return {"model": "yolo", "phase": "Loading", "weights": weights}


def test_the_stage_follows_the_status_of_the_current_change_only() -> None:
    assert stage_of(_view(_fetching(10, 100)), "yolo") == Stage(FETCHING, 10, 100, 2e6)
    assert stage_of(_view(_fetching(10, 100), generation=3), "yolo").name == WAITING
    assert stage_of(_view(_fetching(10, 100)), "other").name == WAITING
    cached = {
        "model": "yolo",
        "phase": "Loading",
        "weights": {"phase": "Cached", "fetchedBytes": 0},
    }
    assert stage_of(_view(cached), "yolo") == Stage(LOADING, fetched=0)
    assert stage_of(_view({"model": "yolo", "phase": "Loading"}), "yolo") == Stage(LOADING)
    assert stage_of(_view({"model": "yolo", "phase": "Scheduling"}), "yolo").name == WAITING


def test_plain_lines_one_per_stage_and_per_tenth_fetched() -> None:
    buffer = io.StringIO()
    out = Console(file=buffer, force_terminal=False, width=200)
    with WaitDisplay(out, "det: yolo") as display:
        display.show(Stage(WAITING), "Scheduling · on gpu-0")
        display.show(Stage(WAITING), "Scheduling · on gpu-0")
        for done in (0, 52, 103, 512, 1014, 1024):
            display.show(Stage(FETCHING, done, 1024, 2 * 1024**2), None)
        display.show(Stage(LOADING, fetched=1024), "Loading")
        display.show(Stage(LOADING, fetched=1024), "Loading · still")
        display.done()
    assert buffer.getvalue().splitlines() == [
        "det: yolo: Scheduling · on gpu-0",
        # The contract's units (GB = 1024^3 bytes, domain/units.py), as every size is printed.
        "det: yolo: fetching weights: 0 B of 1.0 KB at 2.0 MB/s",
        "det: yolo: fetching weights: 103 B of 1.0 KB at 2.0 MB/s",
        "det: yolo: fetching weights: 512 B of 1.0 KB at 2.0 MB/s",
        "det: yolo: fetching weights: 1014 B of 1.0 KB at 2.0 MB/s",
        "det: yolo: fetching weights: 1.0 KB of 1.0 KB at 2.0 MB/s",
        "det: yolo: loading (weights fetched: 1.0 KB)",
    ]


def test_a_cached_start_says_it_fetched_nothing() -> None:
    buffer = io.StringIO()
    with WaitDisplay(Console(file=buffer, force_terminal=False), "det: yolo") as display:
        display.show(Stage(LOADING, fetched=0), "Loading")
    assert "0 bytes fetched" in buffer.getvalue()


def test_on_a_terminal_the_fetch_and_the_load_are_progress_bars() -> None:
    buffer = io.StringIO()
    out = Console(file=buffer, force_terminal=True, width=120)
    with WaitDisplay(out, "det: yolo") as display:
        display.show(Stage(FETCHING, 256 * 1024**2, 1024**3, 50 * 1024**2), None)
        display.show(Stage(LOADING, fetched=1024**3), "Loading")
        display.done()
    shown = buffer.getvalue()
    assert "det: yolo: fetch weights" in shown and "1.0 GB/1.0 GB" in shown
    assert "det: yolo: loading (weights fetched: 1.0 GB)" in shown


def test_describe_shows_the_weights_line_only_for_an_option_with_weights() -> None:
    from fovea.usercli.views import describe_fields

    body: dict[str, Any] = {"task_type": "det", "selected": "yolo", "options": {"yolo": {}}}
    cached = {
        "phase": "Cached",
        "source": "s3://models/yolo",
        "bytesDone": 2 * 1024**2,
        "fetchedBytes": 0,
        "sha256": "ab" * 32,
    }
    fields = dict(describe_fields({**body, "status": {"pod": "p", "weights": cached}}))
    assert fields["Weights"] == (
        "Cached s3://models/yolo (2.0 MB, fetched 0 B this start, sha256 abababababab…)"
    )
    failed = {"phase": "Failed", "source": "http://h/x", "message": "HTTP 404"}
    fields = dict(describe_fields({**body, "status": {"weights": failed}}))
    assert fields["Weights"] == "Failed: HTTP 404 (http://h/x)"
    assert "Weights" not in dict(describe_fields({**body, "status": {"pod": "p"}}))
