"""A warm pod's switches in process (model_pod/warm.py): tiny torch models on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fastapi.testclient import TestClient

from fovea.domain.conditions import RuntimeState
from fovea.domain.resources import RuntimeReport
from fovea.domain.warm import WarmOption
from fovea.model_pod.adapters.adapter_torch import TorchAdapter
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import ModelService
from fovea.model_pod.server import create_app
from fovea.model_pod.warm import SOURCE_DISK, SOURCE_PARKED, WarmRuntime

SAMPLE = {"inputs": [[0.5] * 64]}


def _option(model: str, outputs: int, memory_gb: float = 1.0) -> WarmOption:
    return WarmOption(model, f"mlp-{outputs}", f"mlp:64,{outputs}", True, 0.5, memory_gb)


class Reports:
    """Collects what the pod would report (the Reporter's interface that the service uses)."""

    def __init__(self) -> None:
        self.sent: list[RuntimeReport] = []

    def set(self, report: RuntimeReport) -> None:
        self.sent.append(report)

    def touch(self) -> None:
        pass

    @property
    def current(self) -> RuntimeReport | None:
        return self.sent[-1] if self.sent else None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _warm(
    make_identity: Callable[..., Identity],
    options: tuple[WarmOption, ...],
    request_gb: float = 64.0,  # room to park: this test process holds far less
    keep_warm: float = 600.0,
) -> tuple[ModelService, WarmRuntime, Reports, Clock]:
    first = options[0]
    identity = make_identity("pytorch", first.model_id, architecture=first.architecture)
    identity = replace(identity, model=first.model, warm=options)
    reports = Reports()
    service = ModelService(identity, TorchAdapter(identity.spec), reporter=reports)
    clock = Clock()
    warm = WarmRuntime(service, options, request_gb, keep_warm, clock=clock)
    service.warm = warm
    warm.first_load()
    return service, warm, reports, clock


def test_a_switch_back_loads_nothing_from_disk(make_identity: Callable[..., Identity]) -> None:
    service, warm, reports, _ = _warm(make_identity, (_option("ten", 10), _option("five", 5)))
    http = TestClient(create_app(service))
    assert http.post("/predict", json=SAMPLE).json()["shape"] == [1, 10]
    assert (warm.disk_loads, warm.load_source) == (1, SOURCE_DISK)

    warm.switch("five")
    answer = http.post("/predict", json=SAMPLE)
    assert answer.json()["shape"] == [1, 5] and answer.headers["x-fovea-model"] == "five"
    report = reports.sent[-1]
    assert (report.state, report.model, report.serving_model) == (
        RuntimeState.READY,
        "five",
        "five",
    )
    assert (report.load_source, report.disk_loads) == (SOURCE_DISK, 2)
    assert [p.model for p in report.parked] == ["ten"]
    assert report.parked[0].measured_memory_gb > 0  # 64*10+10 floats, measured
    assert report.runtime_overhead_gb is not None and report.runtime_overhead_gb > 0

    warm.switch("ten")
    answer = http.post("/predict", json=SAMPLE)
    assert answer.json()["shape"] == [1, 10] and answer.headers["x-fovea-model"] == "ten"
    report = reports.sent[-1]
    assert (report.model, report.load_source, report.disk_loads) == ("ten", SOURCE_PARKED, 2)
    assert [p.model for p in report.parked] == ["five"]


def test_a_failed_switch_leaves_the_old_model_serving(
    make_identity: Callable[..., Identity],
) -> None:
    broken = WarmOption("broken", "/models/missing.pt", None, False, 0.5, 1.0)
    service, warm, reports, _ = _warm(make_identity, (_option("ten", 10), broken))
    http = TestClient(create_app(service))
    warm.switch("broken")
    failed = reports.sent[-1]
    assert (failed.state, failed.model, failed.serving_model) == (
        RuntimeState.FAILED,
        "broken",
        "ten",
    )
    assert failed.reason and "not on disk" in failed.reason
    assert http.get("/readyz").status_code == 200
    answer = http.post("/predict", json=SAMPLE)
    assert answer.status_code == 200 and answer.headers["x-fovea-model"] == "ten"
    # Selected again, the serving model is reported Ready (no load: it never left).
    warm.switch("ten")
    again = reports.sent[-1]
    # Two loads from disk began: the first model's and the failed one's.
    assert (again.state, again.model, again.disk_loads) == (RuntimeState.READY, "ten", 2)
    assert again.load_source == SOURCE_DISK and again.serving_model == "ten"


def test_parked_models_go_when_due_or_over_the_budget(
    make_identity: Callable[..., Identity],
) -> None:
    # A request of 10 MB: this process (torch, the test runner) holds more: no room to park.
    options = (_option("ten", 10), _option("five", 5))
    _, warm, reports, _ = _warm(make_identity, options, request_gb=0.01)
    warm.switch("five")
    assert reports.sent[-1].parked == [] and warm.parked == {}
    warm.switch("ten")
    assert reports.sent[-1].load_source == SOURCE_DISK and warm.disk_loads == 3

    # Room enough, but the keep-warm time ends.
    _, warm, reports, clock = _warm(make_identity, options, keep_warm=30.0)
    warm.switch("five")
    assert list(warm.parked) == ["ten"]
    clock.now = 29.0
    warm.expire()
    assert list(warm.parked) == ["ten"]
    clock.now = 30.0
    warm.expire()
    assert warm.parked == {} and reports.sent[-1].parked == []
    assert reports.sent[-1].model == "five"


def test_a_model_outside_the_group_is_not_loaded(make_identity: Callable[..., Identity]) -> None:
    service, warm, reports, _ = _warm(make_identity, (_option("ten", 10), _option("five", 5)))
    sent = len(reports.sent)
    warm.want("other")
    warm.want(None)
    assert warm._wanted is None and len(reports.sent) == sent
    assert service.identity.model == "ten"
