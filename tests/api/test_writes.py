"""The writer against the real API server: patches that never conflict, and only their task's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from api_builders import examples_catalog
from fovea.api.clients import ClientSource
from fovea.api.errors import TaskMismatch
from fovea.api.writes import SelectionWriter, spec_patch
from kube_testing import Kube

pytestmark = pytest.mark.integration

TASK, NAME = "object_detection", "object-detection"


@pytest.fixture
def writer(kube: Kube) -> SelectionWriter:
    kube.apply_catalog(examples_catalog())
    return SelectionWriter(ClientSource(kube.kubeconfig), kube.namespace, "default")


def test_a_write_keeps_what_another_writer_changed_meanwhile(
    kube: Kube, writer: SelectionWriter
) -> None:
    kube.select(TASK, "yolov8n")
    kube.select(TASK, "yolov8n", priority=700)  # someone else
    stored = writer.set_spec(NAME, TASK, {"model": "yolov8m"}, create=True)
    assert stored is not None
    now = kube.selection(TASK)
    assert now["spec"]["model"] == "yolov8m"
    assert now["spec"]["priority"] == 700
    assert stored["metadata"]["resourceVersion"] == now["metadata"]["resourceVersion"]


def test_concurrent_writes_all_succeed_and_the_last_one_stays(
    kube: Kube, writer: SelectionWriter
) -> None:
    models = ["yolov8n", "yolov8s"] * 16
    with ThreadPoolExecutor(16) as pool:
        stored = list(
            pool.map(lambda m: writer.set_spec(NAME, TASK, {"model": m}, create=True), models)
        )
    assert all(s is not None for s in stored)  # no conflict reached the caller
    last = max(stored, key=lambda s: int(s["metadata"]["resourceVersion"]))  # type: ignore[index]
    assert last is not None
    assert kube.selection(TASK)["spec"]["model"] == last["spec"]["model"]


def test_a_selection_of_another_task_is_never_patched(kube: Kube, writer: SelectionWriter) -> None:
    kube.select(TASK, "yolov8n")  # named object-detection
    with pytest.raises(TaskMismatch) as err:
        writer.set_spec(NAME, "Object-Detection", {"model": "yolov8m"}, create=True)
    assert err.value.status_code == 409
    assert "belongs to task 'object_detection', not 'Object-Detection'" in err.value.message
    assert kube.selection(TASK)["spec"]["model"] == "yolov8n"


def test_missing_selections_are_created_or_left_alone(kube: Kube, writer: SelectionWriter) -> None:
    assert writer.set_spec(NAME, TASK, {"wanted": True}, create=False) is None
    assert kube.selections() == []
    created = writer.set_spec(NAME, TASK, {"model": "yolov8n", "wanted": True}, create=True)
    assert created is not None
    assert created["spec"]["task"] == TASK
    assert created["spec"]["catalog"] == "default"
    assert kube.selection(TASK)["spec"]["model"] == "yolov8n"


def test_nothing_to_change_writes_nothing(kube: Kube, writer: SelectionWriter) -> None:
    kube.select(TASK, "yolov8n", wanted=True)
    before = kube.selection(TASK)["metadata"]["resourceVersion"]
    writer.set_spec(NAME, TASK, {"model": "yolov8n", "wanted": True}, create=True)
    assert kube.selection(TASK)["metadata"]["resourceVersion"] == before


def test_the_patch_tests_the_task_first() -> None:
    assert spec_patch("det", {"model": "a", "wanted": True}) == [
        {"op": "test", "path": "/spec/task", "value": "det"},
        {"op": "add", "path": "/spec/model", "value": "a"},
        {"op": "add", "path": "/spec/wanted", "value": True},
    ]
