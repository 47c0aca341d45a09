"""When does `?wait=` return: the pure load_outcome decision."""

from __future__ import annotations

from api_builders import runtime_ready, selection
from fovea.api.loading import load_outcome

MODEL_ID = "yolov8s"


def test_no_selection_yet_is_pending() -> None:
    assert load_outcome(None, MODEL_ID, 1).state == "pending"


def test_a_status_older_than_the_patch_is_pending_even_if_ready() -> None:
    sel = selection(
        "det",
        "yolov8s",
        generation=3,
        status={
            "phase": "Ready",
            "observedGeneration": 2,
            "modelId": MODEL_ID,
            "pod": "p",
            "runtime": runtime_ready("p", MODEL_ID, 1.0),
        },
    )
    assert load_outcome(sel, MODEL_ID, 3).state == "pending"


def test_ready_needs_the_operator_phase_and_the_pods_own_report() -> None:
    status = {"phase": "Ready", "observedGeneration": 3, "modelId": MODEL_ID, "pod": "new"}
    loading = selection("det", "yolov8s", 3, {**status, "phase": "Loading"})
    assert load_outcome(loading, MODEL_ID, 3).state == "pending"
    stale_runtime = selection(
        "det", "yolov8s", 3, {**status, "runtime": runtime_ready("old", "yolov8n", 0.5)}
    )
    assert load_outcome(stale_runtime, MODEL_ID, 3).state == "pending"
    ready = selection("det", "yolov8s", 3, {**status, "runtime": runtime_ready("new", MODEL_ID, 1)})
    assert load_outcome(ready, MODEL_ID, 3).state == "ready"
    # A warm pod is the selection's pod before and after its switch: its report of the
    # model it served before is not the new model's (the API answered select?wait= early).
    warm_before = selection(
        "det", "yolov8s", 3, {**status, "runtime": runtime_ready("new", "yolov8n-id", 1)}
    )
    assert load_outcome(warm_before, MODEL_ID, 3).state == "pending"
    named = {**runtime_ready("new", MODEL_ID, 1), "model": "yolov8n"}  # same id, another option
    assert (
        load_outcome(
            selection("det", "yolov8s", 3, {**status, "runtime": named}), MODEL_ID, 3, "yolov8s"
        ).state
        == "pending"
    )
    assert (
        load_outcome(
            selection("det", "yolov8s", 3, {**status, "runtime": named}), MODEL_ID, 3
        ).state
        == "ready"
    )
    fallback = selection(
        "det",
        "yolov8s",
        3,
        {**status, "phase": "CPUFallback", "runtime": runtime_ready("new", MODEL_ID, 1, "cpu")},
    )
    assert load_outcome(fallback, MODEL_ID, 3).state == "ready"


def test_an_external_api_is_ready_without_a_pod() -> None:
    sel = selection(
        "sum",
        "claude",
        2,
        {"phase": "Ready", "observedGeneration": 2, "modelId": "claude", "device": "external"},
    )
    assert load_outcome(sel, "claude", 2).state == "ready"


def test_a_failed_load_gives_the_pods_reason() -> None:
    sel = selection(
        "det",
        "yolov8s",
        4,
        {
            "phase": "Failed",
            "observedGeneration": 4,
            "message": "Failed to load model: Out of memory (needs 9.1 GiB)",
            "pod": "new",
            "runtime": {"state": "Failed", "pod": "new", "reason": "Out of memory (needs 9.1 GiB)"},
        },
    )
    outcome = load_outcome(sel, MODEL_ID, 4)
    assert outcome.state == "failed"
    assert outcome.reason == "Out of memory (needs 9.1 GiB)"
    assert outcome.message == "Failed to load model: Out of memory (needs 9.1 GiB)"


def test_a_failed_phase_without_a_current_report_uses_the_operator_message() -> None:
    sel = selection(
        "det",
        "yolov8s",
        4,
        {
            "phase": "Failed",
            "observedGeneration": 4,
            "message": "Failed to load model: Out of memory",
            "pod": "new",
            "runtime": {"state": "Failed", "pod": "older", "reason": "something stale"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "LoadFailed",
                    "message": "Failed to load model: Out of memory",
                }
            ],
        },
    )
    outcome = load_outcome(sel, MODEL_ID, 4)
    # The operator's message as written: prefixed once, never stripped and prefixed again.
    assert outcome.message == "Failed to load model: Out of memory"
    assert "something stale" not in outcome.reason


def test_unschedulable_is_a_failure_with_the_planners_reason() -> None:
    sel = selection(
        "det",
        "huge",
        2,
        {
            "phase": "Unschedulable",
            "observedGeneration": 2,
            "message": "needs 85 GiB; the largest GPU offers 64 GiB under the threshold",
        },
    )
    outcome = load_outcome(sel, "huge-id", 2)
    assert outcome.state == "failed"
    assert "needs 85 GiB" in outcome.reason
    assert outcome.message == f"Failed to load model: {outcome.reason}"


def test_a_failed_runtime_of_the_current_pod_fails_before_the_operator_notices() -> None:
    sel = selection(
        "det",
        "yolov8s",
        2,
        {
            "phase": "Loading",
            "observedGeneration": 2,
            "pod": "new",
            "runtime": {"state": "Failed", "pod": "new", "reason": "Out of memory"},
        },
    )
    outcome = load_outcome(sel, MODEL_ID, 2)
    assert (outcome.reason, outcome.message) == (
        "Out of memory",
        "Failed to load model: Out of memory",
    )
