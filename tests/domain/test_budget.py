"""The /validate budget: the contract's two examples, and what several GPUs mean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fovea.domain import budget
from fovea.domain import constants as c
from fovea.domain.budget import CONSIDER, BudgetReport, Selected, epoch_seconds
from fovea.domain.demand import Wanted, build, needs_plan
from fovea.domain.endpoints import label_value
from fovea.domain.gpus import Gpu
from fovea.domain.placement import Outcome
from fovea.domain.resources import (
    CatalogSpec,
    DevicePolicy,
    InferenceSettings,
    ModelOption,
    Phase,
    RuntimeReport,
    SelectionSpec,
    SelectionStatus,
    TaskSpec,
)

CONTRACT_FIELDS = {
    "valid",
    "total_vram_gb",
    "total_required_gb",
    "threshold",
    "max_allowed_gb",
    "model_requirements",
    "warnings",
}


NOW = 1_800_000_000.0


def validate(cat: CatalogSpec, selections: Sequence[Selected], gpus: Sequence[Gpu]) -> BudgetReport:
    """The budget of these selections alone, planned by the operator's demand builder.

    A selection whose status says it holds a GPU has the operator's pod there.
    """
    wanted, pods = [], []
    for sel in selections:
        option = cat.option(sel.spec.task, sel.spec.model) if sel.spec.model else None
        stored = sel.status or SelectionStatus()
        status = stored.model_dump(by_alias=True, mode="json", exclude_none=True)
        if option is None or not needs_plan(sel.spec, option, cat.inference, status, NOW):
            continue
        wanted.append(Wanted(sel.key, f"uid-{sel.key}", sel.spec, option, status))
        if stored.node is not None and stored.gpu_index is not None:
            pods.append(_pod(sel, stored.node, stored.gpu_index))
    nodes = [
        {"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        for n in sorted({g.node for g in gpus} | {"cpu"})
    ]
    planned = build(
        wanted,
        gpus=gpus,
        nodes=nodes,
        model_pods=pods,
        quotas={},
        threshold=cat.inference.offload_threshold,
        sharing=cat.sharing_mode,
    )
    return budget.validate(cat, selections, planned)


def _pod(sel: Selected, node: str, gpu: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{sel.key.split('/')[1]}-pod",
            "namespace": sel.key.split("/")[0],
            "labels": {c.LABEL_MODEL: label_value(sel.spec.model or "")},
            "annotations": {c.ANNOTATION_PLANNED_NODE: node, c.ANNOTATION_PLANNED_GPU: str(gpu)},
            "ownerReferences": [
                {"kind": c.SELECTION_KIND, "controller": True, "uid": f"uid-{sel.key}"}
            ],
        },
        "spec": {"nodeName": node},
    }


def catalog(threshold: float = 0.8, **tasks: dict[str, ModelOption]) -> CatalogSpec:
    return CatalogSpec(
        tasks={task: TaskSpec(options=options) for task, options in tasks.items()},
        inference=InferenceSettings(offload_threshold=threshold),
    )


def gib(model_id: str, vram_gb: float, **kw: object) -> ModelOption:
    return ModelOption(model_id=model_id, vram_gb=vram_gb, **kw)  # type: ignore[arg-type]


def select(task: str, model: str | None, **kw: object) -> Selected:
    status = kw.pop("status", None)
    spec = SelectionSpec(task=task, model=model, **kw)  # type: ignore[arg-type]
    return Selected(f"fovea/{task.replace('_', '-')}", spec, status)  # type: ignore[arg-type]


def contract_catalog() -> CatalogSpec:
    return catalog(
        video_summarization={"llama-4-maverick": gib("meta-llama/Llama-4-Maverick", 16.0)},
        object_detection={"yolov8s": gib("yolov8s", 1.5), "yolov8l": gib("yolov8l", 4.0)},
        object_tracking={"bytetrack": gib("bytetrack", 0.8), "samurai": gib("samurai", 0.5)},
    )


def test_contract_example_valid_budget() -> None:
    selections = [
        select("video_summarization", "llama-4-maverick"),
        select("object_detection", "yolov8s"),
        select("object_tracking", "bytetrack"),
    ]
    report = validate(contract_catalog(), selections, [Gpu("gpu-node", 0, 24.0)])
    body = report.model_dump(mode="json", include=CONTRACT_FIELDS)
    assert body == {
        "valid": True,
        "total_vram_gb": 24.0,
        "total_required_gb": 18.3,
        "threshold": 0.8,
        "max_allowed_gb": 19.2,
        "model_requirements": {
            "video_summarization": {"model_name": "llama-4-maverick", "vram_gb": 16.0},
            "object_detection": {"model_name": "yolov8s", "vram_gb": 1.5},
            "object_tracking": {"model_name": "bytetrack", "vram_gb": 0.8},
        },
        "warnings": [],
    }


def test_contract_example_invalid_budget() -> None:
    selections = [
        select("video_summarization", "llama-4-maverick"),
        select("object_detection", "yolov8l"),
        select("object_tracking", "samurai"),
    ]
    report = validate(contract_catalog(), selections, [Gpu("gpu-node", 0, 8.0)])
    body = report.model_dump(mode="json", include=CONTRACT_FIELDS)
    assert body["valid"] is False
    assert (body["total_vram_gb"], body["total_required_gb"]) == (8.0, 20.5)
    assert (body["threshold"], body["max_allowed_gb"]) == (0.8, 6.4)
    assert body["model_requirements"] == {
        "video_summarization": {"model_name": "llama-4-maverick", "vram_gb": 16.0},
        "object_detection": {"model_name": "yolov8l", "vram_gb": 4.0},
        "object_tracking": {"model_name": "samurai", "vram_gb": 0.5},
    }
    # The contract's two sentences first, then why the plan cannot place one.
    assert body["warnings"][:2] == [
        "Total required VRAM (20.5 GB) exceeds available VRAM (8.0 GB)",
        "Consider selecting smaller models or reducing simultaneous tasks",
    ]
    assert body["warnings"][2:] == [
        "video_summarization: llama-4-maverick (16.0 GB) cannot be placed on a GPU: needs 16.0 GB "
        "but the largest GPU allows 6.4 GB (80% of 8.0 GB); its option has no cpu_memory_gb, "
        "so it cannot run on the CPU"
    ]
    assert report.placements["object_detection"].outcome == Outcome.GPU


def test_above_the_threshold_but_within_memory() -> None:
    cat = catalog(big={"m": gib("m", 18.0)})
    report = validate(cat, [select("big", "m")], [Gpu("n", 0, 20.0)])
    assert not report.valid
    assert report.warnings[:2] == [
        "Total required VRAM (18.0 GB) exceeds the threshold limit (16.0 GB, 80% of 20.0 GB)",
        CONSIDER,
    ]
    assert report.warnings[2].startswith("big: m (18.0 GB) cannot be placed on a GPU")


def test_vram_mb_counts_in_gib() -> None:
    cat = catalog(det={"yolov8n": ModelOption(model_id="yolov8n", vram_mb=512)})
    report = validate(cat, [select("det", "yolov8n")], [Gpu("n", 0, 8.0)])
    assert report.model_requirements["det"].vram_gb == 0.5
    assert report.total_required_gb == 0.5
    quarter = catalog(t={"bt": ModelOption(model_id="bt", vram_mb=256)})
    assert validate(quarter, [select("t", "bt")], []).model_requirements["t"].vram_gb == 0.25


def test_several_gpus_sum_but_each_model_must_fit_on_one() -> None:
    cat = catalog(a={"m": gib("m", 10.0)}, b={"m": gib("m", 10.0)})
    gpus = [Gpu("n1", 0, 16.0), Gpu("n2", 0, 16.0)]  # 12.8 each, 25.6 in all
    report = validate(cat, [select("a", "m"), select("b", "m")], gpus)
    assert report.valid and report.total_vram_gb == 32.0 and report.max_allowed_gb == 25.6
    assert sorted(g.tasks[0] for g in report.gpus) == ["a", "b"]
    # 20 + 6 GB fits the sums (26 <= 28.8) but not the GPUs: 20 fits neither 18 GB GPU alone.
    cat = catalog(a={"m": gib("m", 20.0)}, b={"m": gib("m", 6.0)})
    gpus = [Gpu("n1", 0, 18.0), Gpu("n2", 0, 18.0)]
    report = validate(cat, [select("a", "m"), select("b", "m")], gpus)
    assert not report.valid
    assert report.total_required_gb <= report.max_allowed_gb
    assert report.warnings[0] == CONSIDER
    assert report.warnings[1].startswith("a: m (20.0 GB) cannot be placed on a GPU")


def test_without_gpus_valid_only_if_nothing_needs_one() -> None:
    cat = catalog(
        summary={"claude": ModelOption(model_id="claude", framework="external_api")},
        det={"n": gib("n", 0.5, cpu_memory_gb=1.0)},
    )
    only_api = validate(cat, [select("summary", "claude")], [])
    assert only_api.valid and only_api.total_vram_gb == 0.0 and only_api.warnings == []
    assert only_api.model_requirements["summary"].vram_gb == 0.0
    pinned = validate(cat, [select("det", "n", device_policy=DevicePolicy.CPU)], [])
    assert pinned.valid and pinned.total_required_gb == 0.0
    needs_gpu = validate(cat, [select("summary", "claude"), select("det", "n")], [])
    assert not needs_gpu.valid
    assert needs_gpu.warnings == [
        "Total required VRAM (0.5 GB) exceeds available VRAM (0.0 GB)",
        CONSIDER,
        "det: n (0.5 GB) would run on the CPU: no schedulable GPU in the cluster; "
        "falls back to the CPU (1.0 GB), on cpu",
    ]


def test_unselected_and_unknown_models() -> None:
    cat = catalog(det={"n": gib("n", 1.0)})
    report = validate(cat, [select("det", None), select("track", "ghost")], [Gpu("n", 0, 8.0)])
    assert report.valid and report.model_requirements == {}
    assert report.warnings == ["track: model 'ghost' is not in the catalog; it is not counted"]


def test_a_running_model_of_higher_priority_keeps_its_gpu() -> None:
    cat = catalog(a={"m": gib("m", 6.0)}, b={"m": gib("m", 6.0)})
    running = SelectionStatus(phase=Phase.READY, node="n", gpu_index=0)
    selections = [select("a", "m", priority=500, status=running), select("b", "m")]
    report = validate(cat, selections, [Gpu("n", 0, 10.0)])
    assert not report.valid
    assert report.placements["a"].outcome == Outcome.GPU
    assert report.placements["a"].reason.startswith("stays on n GPU 0")
    assert report.placements["b"].outcome == Outcome.UNSCHEDULABLE


def test_last_use_comes_from_the_status_or_the_pod() -> None:
    assert epoch_seconds("1970-01-01T00:01:40Z") == 100.0
    assert epoch_seconds(None) == epoch_seconds("garbage") == epoch_seconds("2024-01-01") == 0.0
    cat = catalog(a={"m": gib("m", 6.0)}, b={"m": gib("m", 6.0)})
    idle = SelectionStatus(
        phase=Phase.READY, node="n", gpu_index=0, last_used="2024-01-01T00:00:00Z"
    )
    busy = SelectionStatus(
        phase=Phase.CPU_FALLBACK,
        runtime=RuntimeReport(state="Ready", last_used="2024-06-01T00:00:00Z"),
    )
    report = validate(
        cat, [select("a", "m", status=idle), select("b", "m", status=busy)], [Gpu("n", 0, 10.0)]
    )
    assert report.placements["b"].outcome == Outcome.GPU  # used more recently: takes the GPU
    assert report.placements["a"].outcome == Outcome.EVICTED
    assert any(w.startswith("a: m (6.0 GB) would be evicted") for w in report.warnings)


def test_a_model_above_max_memory_per_model_is_refused_and_takes_no_room() -> None:
    cat = CatalogSpec(
        tasks={
            "sum": TaskSpec(options={"big": gib("big", 40.0)}),
            "det": TaskSpec(options={"n": gib("n", 8.0)}),
        },
        inference=InferenceSettings(max_memory_per_model=24.0),
    )
    report = validate(cat, [select("sum", "big"), select("det", "n")], [Gpu("n", 0, 80.0)])
    assert not report.valid
    assert report.total_required_gb == 48.0  # it is selected: it counts
    assert report.warnings == [
        CONSIDER,
        "sum: Model 'big' needs 40.0 GB, more than max_memory_per_model 24.0 GB; "
        "the operator will not load it",
    ]
    refused = report.placements["sum"]
    assert refused.outcome == Outcome.UNSCHEDULABLE and refused.node is None
    assert refused.reason == "Model 'big' needs 40.0 GB, more than max_memory_per_model 24.0 GB"
    assert report.gpus[0].tasks == ["det"]  # the operator does not plan it: no room taken
    assert report.placements["det"].outcome == Outcome.GPU


def test_auto_and_a_limit_at_the_models_size_refuse_nothing() -> None:
    for limit in ("auto", 40.0):
        cat = CatalogSpec(
            tasks={"sum": TaskSpec(options={"big": gib("big", 40.0)})},
            inference=InferenceSettings.model_validate({"max_memory_per_model": limit}),
        )
        report = validate(cat, [select("sum", "big")], [Gpu("n", 0, 80.0)])
        assert report.valid and report.warnings == [], limit
