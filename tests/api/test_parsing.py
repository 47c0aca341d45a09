"""Lenient reading of statuses written by other (maybe newer) processes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fovea.api.parsing import parse_lenient
from fovea.api.state import parse_selection
from fovea.domain.resources import SelectionSpec, SelectionStatus


def test_valid_data_parses_unchanged() -> None:
    status = parse_lenient(SelectionStatus, {"phase": "Ready", "node": "n1"})
    assert status.phase == "Ready"
    assert status.node == "n1"


def test_unknown_fields_are_dropped_not_fatal() -> None:
    data = {"phase": "Ready", "futureField": 1, "runtime": {"state": "Ready", "newThing": "x"}}
    status = parse_lenient(SelectionStatus, data)
    assert status.phase == "Ready"
    assert status.runtime is not None and status.runtime.state == "Ready"
    assert "futureField" in data  # the input is not modified


def test_a_malformed_field_is_dropped() -> None:
    status = parse_lenient(SelectionStatus, {"phase": "Ready", "gpuIndex": "zero"})
    assert status.gpu_index is None
    assert status.phase == "Ready"


def test_a_nested_object_missing_its_required_field_is_dropped_whole() -> None:
    # status.weights needs its phase; a report without one is dropped, the rest kept.
    status = parse_lenient(SelectionStatus, {"node": "n1", "weights": {"bytesDone": 5}})
    assert status.weights is None
    assert status.node == "n1"


def test_a_missing_required_top_level_field_still_fails() -> None:
    with pytest.raises(ValidationError):
        parse_lenient(SelectionSpec, {"model": "m"})


def test_a_selection_whose_spec_does_not_parse_is_skipped() -> None:
    assert parse_selection({"metadata": {"name": "x"}, "spec": {"model": "m"}}) is None


def test_a_selection_with_an_unreadable_status_is_kept() -> None:
    sel = parse_selection(
        {
            "metadata": {"name": "det", "resourceVersion": "7", "generation": 2},
            "spec": {"task": "det", "model": "m"},
            "status": {"phase": "NoSuchPhase", "node": "n"},
        }
    )
    assert sel is not None
    assert sel.generation == 2
    assert sel.status.node == "n"
