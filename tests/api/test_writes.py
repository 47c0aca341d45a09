"""The writer against the real API server: optimistic concurrency and stale caches."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from api_builders import examples_catalog
from fovea.api.clients import ClientSource
from fovea.api.writes import SelectionWriter
from kube_testing import Kube

pytestmark = pytest.mark.integration

TASK, NAME = "object_detection", "object-detection"


@pytest.fixture
def writer(kube: Kube) -> SelectionWriter:
    kube.apply_catalog(examples_catalog())
    return SelectionWriter(ClientSource(kube.kubeconfig), kube.namespace, "default")


def test_a_write_from_a_stale_copy_conflicts_rereads_and_keeps_the_other_change(
    kube: Kube, writer: SelectionWriter, caplog: pytest.LogCaptureFixture
) -> None:
    kube.select(TASK, "yolov8n")
    stale: dict[str, Any] = kube.selection(TASK)
    kube.select(TASK, "yolov8n", priority=700)  # someone else, meanwhile
    with caplog.at_level(logging.INFO, logger="fovea.api.writes"):
        stored = writer.set_spec(NAME, {"model": "yolov8m"}, stale, TASK)
    assert stored is not None
    assert "retrying write of object-detection after HTTP 409" in caplog.text
    now = kube.selection(TASK)
    assert now["spec"]["model"] == "yolov8m"
    assert now["spec"]["priority"] == 700
    assert stored["metadata"]["resourceVersion"] == now["metadata"]["resourceVersion"]


def test_a_cached_copy_that_already_agrees_does_not_skip_the_write(
    kube: Kube, writer: SelectionWriter
) -> None:
    kube.select(TASK, "yolov8m")
    believed = kube.selection(TASK)  # the cache's view: yolov8m already
    kube.select(TASK, "yolov8s")  # the truth moved on; the cache has not seen it yet
    writer.set_spec(NAME, {"model": "yolov8m"}, believed, TASK)
    assert kube.selection(TASK)["spec"]["model"] == "yolov8m"


def test_missing_selections_are_created_or_left_alone(kube: Kube, writer: SelectionWriter) -> None:
    assert writer.set_spec(NAME, {"wanted": True}, None, None) is None
    assert kube.selections() == []
    created = writer.set_spec(NAME, {"model": "yolov8n", "wanted": True}, None, TASK)
    assert created is not None
    assert created["spec"]["task"] == TASK
    assert created["spec"]["catalog"] == "default"
    assert kube.selection(TASK)["spec"]["model"] == "yolov8n"


def test_nothing_to_change_writes_nothing(kube: Kube, writer: SelectionWriter) -> None:
    kube.select(TASK, "yolov8n", wanted=True)
    before = kube.selection(TASK)["metadata"]["resourceVersion"]
    writer.set_spec(NAME, {"model": "yolov8n", "wanted": True}, None, TASK)
    assert kube.selection(TASK)["metadata"]["resourceVersion"] == before
