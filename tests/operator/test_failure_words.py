"""Every failure's full message, end to end (issue 24): as the model pod reports it, in the
selection's status and Event, in `/select?wait=`'s error, and in the command line.

Pure: the model pod's own failure function, the operator's decision, the API's
judgement and error, the command line's view of it, chained on one table. The
sentence is rendered once (`fovea.domain.messages`): nobody re-prefixes it.
"""

from __future__ import annotations

from typing import Any

import pytest

from api_builders import selection as api_selection
from api_builders import state as api_state
from builders import catalog, catalog_spec, option, running, selection, world
from fovea.api.errors import ModelLoadFailed
from fovea.api.inspect import task_view
from fovea.api.loading import load_outcome
from fovea.domain.conditions import ConditionType, EventType, Phase, Reason, RuntimeState
from fovea.domain.messages import LoadFailure, failure_reason, missing_weights
from fovea.model_pod.adapters.base import LoadError
from fovea.model_pod.failures import failure_of
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Actions, World, reconcile
from fovea.usercli.views import progress

TASK, MODEL = "object_detection", "yolov8n"
TASKS = {
    TASK: {
        MODEL: option(modelId=MODEL, framework="ultralytics", vramMb=512),
        "huge": option(500, modelId="huge"),
    }
}
# The API side reads the contract's catalog, whose object_detection has yolov8n (0.5 GB).
MISSING = missing_weights(
    "the .pt weights file is", "/models/yolov8n.pt", " and downloads are off (offline)"
)

# (what the model pod meets, at which stage) -> (what it reports, and the reason it gives)
POD_FAILURES: list[tuple[BaseException | tuple[LoadFailure, str], str, LoadFailure, str]] = [
    (
        MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "load",
        LoadFailure.OUT_OF_MEMORY,
        "Out of memory: load failed: CUDA out of memory. Tried to allocate 2.00 GiB",
    ),
    (
        RuntimeError("DefaultCPUAllocator: can't allocate memory"),
        "warm up",
        LoadFailure.OUT_OF_MEMORY,
        "Out of memory: warm up failed: DefaultCPUAllocator: can't allocate memory",
    ),
    (LoadError(MISSING), "load", LoadFailure.LOAD_ERROR, MISSING),
    (KeyError("layer.3.weight"), "load", LoadFailure.EXCEPTION, "KeyError: 'layer.3.weight'"),
    (
        ValueError("bad shape"),
        "warm up",
        LoadFailure.EXCEPTION,
        "warm up failed: ValueError: bad shape",
    ),
    (
        (LoadFailure.BAD_ENVIRONMENT, "FOVEA_MODEL_ID is not set"),
        "load",
        LoadFailure.BAD_ENVIRONMENT,
        "bad model-pod environment: FOVEA_MODEL_ID is not set",
    ),
    (
        (LoadFailure.STOPPED_SERVING, "sglang exited with code 1"),
        "load",
        LoadFailure.STOPPED_SERVING,
        "sglang exited with code 1",
    ),
]


def _w(sel: Any, pods: list[dict[str, Any]] | None = None) -> World:
    return world(sel, catalogs=[catalog(catalog_spec(TASKS))], pods=pods)


def _decide(world_: World) -> Actions:
    return reconcile(world_, PodSettings()).actions()


def _operator_status(report: dict[str, Any] | None, model: str = MODEL) -> tuple[dict, Actions]:
    """The status (and actions) the operator writes for the model pod's report."""
    created = _decide(_w(selection(TASK, model))).create
    if report is None:
        actions = _decide(_w(selection(TASK, model)))
        return actions.status[("ns", TASK.replace("_", "-"))], actions
    pod = created[0]
    report = {**report, "pod": pod["metadata"]["name"]}
    actions = _decide(_w(selection(TASK, model, {"runtime": report}), pods=[running(pod)]))
    return actions.status[("ns", TASK.replace("_", "-"))], actions


def _api_and_cli(status: dict[str, Any], model: str) -> tuple[str, str]:
    """What `/select?wait=` answers and what the command line prints, for that status."""
    sel = api_selection(TASK, model, 1, status)
    st = api_state([sel])
    option_ = st.catalog.option(TASK, model) if st.catalog else None
    assert option_ is not None
    outcome = load_outcome(sel, option_.model_id, sel.generation)
    assert outcome.state == "failed"
    error = ModelLoadFailed(outcome.message).message  # the body is {"error": <this>}
    state, line = progress(task_view(st, TASK), model)
    assert state == "failed"
    return error, f"error: {TASK}: {model}: {line}"  # commands._wait's CliError, printed


@pytest.mark.parametrize(("met", "stage", "failure", "reason"), POD_FAILURES)
def test_a_load_failure_reads_the_same_from_the_pod_to_the_command_line(
    met: BaseException | tuple[LoadFailure, str], stage: str, failure: LoadFailure, reason: str
) -> None:
    # 1. The model pod: a failure and its reason, never the selection's prefix.
    if isinstance(met, BaseException):
        reported = failure_of(met, stage)
    else:
        reported = (met[0], failure_reason(met[0], met[1], stage))
    assert reported == (failure, reason)
    assert not reason.startswith("Failed to load model")
    full = f"Failed to load model: {reason}"

    # 2. The operator: the status message, the Ready condition and the Warning Event.
    report = {"state": RuntimeState.FAILED, "failure": failure, "reason": reason}
    status, actions = _operator_status(report)
    assert status["phase"] == Phase.FAILED
    assert status["message"] == full
    ready = next(c for c in status["conditions"] if c["type"] == ConditionType.READY)
    assert (ready["reason"], ready["message"]) == (Reason.LOAD_FAILED, full)
    assert (EventType.WARNING, Reason.LOAD_FAILED, full) in [
        (e.type, e.reason, e.message) for e in actions.events
    ]

    # 3. The API's `/select?wait=` error and 4. the command line: the same sentence, once.
    error, printed = _api_and_cli({**status, "runtime": {**report, "pod": status["pod"]}}, MODEL)
    assert error == full
    assert printed == f"error: {TASK}: {MODEL}: {full}"


def test_a_model_no_gpu_can_hold_reads_the_same_from_the_planner_to_the_command_line() -> None:
    status, _ = _operator_status(None, "huge")
    assert status["phase"] == Phase.UNSCHEDULABLE
    why = status["message"]
    assert why.startswith("needs 500.0 GB but the largest GPU allows 19.2 GB (80% of 24.0 GB)")
    api_status = {**status, "model": "yolov8n", "modelId": "yolov8n"}
    error, printed = _api_and_cli(api_status, MODEL)
    assert error == f"Failed to load model: {why}"
    assert printed == f"error: {TASK}: {MODEL}: Failed to load model: {why}"
