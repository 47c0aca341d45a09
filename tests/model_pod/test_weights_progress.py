"""The fetch's status report: the contract's shape, its merge patch, and delivery."""

from __future__ import annotations

from typing import Any

from fovea.domain.resources import RuntimeReport, WeightsReport
from fovea.model_pod.report import runtime_patch
from fovea.model_pod.weights.progress import (
    CACHED,
    FAILED,
    Outcome,
    Progress,
    ProgressReporter,
    weights_patch,
    weights_status,
)


def test_the_status_is_the_contracts_weights_report() -> None:
    status = weights_status(
        phase="Fetching",
        source="s3://b/k",
        message="fetching",
        bytes_done=10,
        bytes_total=100,
        fetched_bytes=10,
        bytes_per_second=5.5,
        sha256=None,
        revision=None,
    )
    report = WeightsReport.model_validate(status)  # the CRD's model refuses unknown keys
    assert report.bytes_total == 100 and report.bytes_per_second == 5.5
    assert report.updated_at and report.updated_at.endswith("Z")
    assert status["sha256"] is None  # sent as null: a merge patch removes an older value


def test_the_patch_names_its_pod_and_touches_only_runtime() -> None:
    status = {"phase": "Cached"}
    assert weights_patch(status, "pod-1") == {
        "status": {
            "runtime": {
                "pod": "pod-1",
                "state": "Loading",
                "model": None,
                "modelId": None,
                "servingModel": None,
                "weights": status,
            }
        }
    }
    assert weights_patch(status) == {"status": {"runtime": {"weights": status}}}


def test_the_model_containers_patch_never_carries_weights() -> None:
    report = RuntimeReport(
        state="Ready", pod="p", weights=WeightsReport(phase="Cached", source="hf://a/b")
    )
    assert "weights" not in runtime_patch(report)["status"]["runtime"]
    assert "weights" not in runtime_patch(RuntimeReport(state="Loading"))["status"]["runtime"]


def test_fetching_then_the_outcome_is_delivered() -> None:
    sent: list[dict[str, Any]] = []
    reporter = ProgressReporter(sent.append, "https://h/w.bin", pod="p", interval=3600)
    progress = Progress(bytes_total=100)
    reporter.start(progress, "fetching https://h/w.bin")
    progress.add(40)
    reporter.note("retry 1 of 4 in 0.5s")
    reporter.finish(Outcome(CACHED, "fetched", 100, 100, 100, "ab" * 32))
    weights = [body["status"]["runtime"]["weights"] for body in sent]
    assert [w["phase"] for w in weights] == ["Fetching", "Fetching", "Cached"]
    assert weights[1]["bytesDone"] == 40 and weights[1]["message"] == "retry 1 of 4 in 0.5s"
    assert weights[2]["sha256"] == "ab" * 32 and weights[2]["fetchedBytes"] == 100
    assert all(body["status"]["runtime"]["pod"] == "p" for body in sent)


def test_the_outcome_is_retried_when_the_api_server_hiccups() -> None:
    class Unavailable(Exception):
        status = 503

    attempts: list[dict[str, Any]] = []

    def send(body: dict[str, Any]) -> None:
        attempts.append(body)
        if len(attempts) < 3:
            raise Unavailable()

    reporter = ProgressReporter(send, "hf://a/b")
    status = reporter.finish(Outcome(FAILED, "hf://a/b not found (or private: give HF_TOKEN)"))
    assert len(attempts) == 3 and reporter.sent == [status]
    assert reporter.final == status and status["phase"] == "Failed"
