"""`fovea-models describe`: the last switch's steps (status.lastSwitch), one line each."""

from __future__ import annotations

from fovea.usercli.views import switch_rows, switch_title

RECORD = {
    "model": "yolov8s",
    "from": "yolov8n",
    "phases": [
        {"name": "Planned", "at": "2026-01-31T12:00:00.000Z"},
        {"name": "PodBound", "at": "2026-01-31T12:00:00.050Z"},
        {"name": "ProcessStarted", "at": "2026-01-31T12:00:00.120Z"},
        {"name": "Ready", "at": "2026-01-31T12:00:03.950Z"},
    ],
    "totalSeconds": 3.95,
}


def test_describe_prints_each_step_and_the_seconds_it_took() -> None:
    body = {"status": {"lastSwitch": RECORD}}
    assert switch_title(body) == "yolov8n -> yolov8s: 3.950s to Ready"
    assert switch_rows(body) == [
        {"phase": "Planned", "at": "2026-01-31T12:00:00.000Z", "took": None},
        {"phase": "PodBound", "at": "2026-01-31T12:00:00.050Z", "took": "+0.050s"},
        {"phase": "ProcessStarted", "at": "2026-01-31T12:00:00.120Z", "took": "+0.070s"},
        {"phase": "Ready", "at": "2026-01-31T12:00:03.950Z", "took": "+3.830s"},
    ]


def test_a_first_use_under_way_and_no_switch_at_all() -> None:
    going = {"model": "yolov8n", "phases": [RECORD["phases"][0]]}
    assert switch_title({"status": {"lastSwitch": going}}) == (
        "nothing (first use) -> yolov8n: under way"
    )
    assert switch_title({"status": {"phase": "Ready"}}) is None
    assert switch_rows({"status": None}) == []
