"""Hostile input is echoed back, and logged, only in part (issue: a 5,000-character task_type)."""

from __future__ import annotations

import logging

import pytest

from api_builders import examples_catalog
from api_server import ApiServer
from fovea.api.errors import MAX_ECHO_CHARS, InvalidTaskType, shown
from kube_testing import Kube

LONG = "x" * 5000


def test_shown_cuts_long_input_and_escapes_control_characters() -> None:
    assert shown("object_detection") == "object_detection"
    cut = shown(LONG)
    assert cut.startswith("x" * MAX_ECHO_CHARS + "…") and "5000 characters" in cut
    assert len(cut) < MAX_ECHO_CHARS + 30
    assert shown("a\nINFO forged\x1b[2J") == "a\\nINFO forged\\x1b[2J"
    assert len(InvalidTaskType(LONG).message) < 200


@pytest.mark.integration
def test_a_5000_character_task_type_is_neither_echoed_nor_logged_whole(
    kube: Kube, api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    kube.apply_catalog(examples_catalog())
    caplog.set_level(logging.DEBUG, logger="fovea")  # the API's own loggers, not the client's
    for method, path in (
        ("POST", "/api/models/select"),
        ("POST", "/api/models/validate"),
    ):
        answer = api.http.request(method, path, params={"task_type": LONG, "model_name": "yolov8n"})
        assert answer.status_code in (400, 404), answer.text[:300]
        error = answer.json()["error"]
        assert len(error) < 300 and "5000 characters" in error, error[:300]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("fovea")]
    assert not [m for m in ours if LONG in m]
    assert kube.selections() == []
