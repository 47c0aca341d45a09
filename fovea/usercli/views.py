"""Pure functions: the API's JSON bodies in, the rows and lines the commands print out.

A row is a dict of plain values (what `--output json` prints); `None` is
"not known" and shows as `-` in a table.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fovea.domain.conditions import Phase, WeightsPhase
from fovea.domain.messages import failed_to_load
from fovea.domain.units import format_gb

Row = dict[str, Any]

# Phases in which a selection has (or is getting, or lost) a model pod: what `ps` lists.
ACTIVE_PHASES = frozenset(
    {Phase.SCHEDULING, Phase.LOADING, Phase.READY, Phase.CPU_FALLBACK, Phase.FAILED}
)


def catalog_rows(tasks_body: dict[str, Any]) -> list[Row]:
    """`list`: one row per option of every task (GET /api/models/tasks)."""
    rows = []
    for task, view in sorted(tasks_body["tasks"].items()):
        for name, option in view["options"].items():
            rows.append(
                {
                    "task": task,
                    "option": name,
                    "selected": name == view["selected"],
                    "model_id": option.get("model_id"),
                    "framework": option.get("framework"),
                    "declared_memory_gb": option.get("declared_memory_gb"),
                    "cpu_fallback": bool(option.get("cpu_fallback")),
                    "description": option.get("description"),
                }
            )
    return rows


def model_rows(tasks_body: dict[str, Any], now: datetime | None = None) -> list[Row]:
    """`ps`: the tasks whose model is loaded, loading or failed, from their selections' status."""
    rows = []
    for task, view in sorted(tasks_body["tasks"].items()):
        status = view.get("status") or {}
        if status.get("phase") not in ACTIVE_PHASES:
            continue
        runtime = status.get("runtime") or {}
        selected = view.get("selected")
        option = view["options"].get(selected or "", {})
        declared = status.get("declaredMemoryGb", option.get("declared_memory_gb"))
        last_used = runtime.get("lastUsed") or status.get("lastUsed")
        rows.append(
            {
                "task": task,
                "model": selected,
                "model_id": runtime.get("modelId") or status.get("modelId"),
                "phase": status.get("phase"),
                "device": runtime.get("device") or status.get("device"),
                "node": status.get("node"),
                "gpu_index": gpu_index(status),
                "pod": status.get("pod") or runtime.get("pod"),
                "measured_memory_gb": _first(
                    runtime.get("measuredMemoryGb"), status.get("measuredMemoryGb")
                ),
                "declared_memory_gb": declared,
                "load_time_s": _first(
                    runtime.get("loadTimeSeconds"), status.get("loadTimeSeconds")
                ),
                "last_used": last_used,
                "last_used_ago": age(last_used, now),
                "message": status.get("message"),
            }
        )
    return rows


def gpu_rows(status_body: dict[str, Any], threshold: float) -> list[Row]:
    """`ps`: each GPU's use (measured, else declared, of what holds it), threshold and total."""
    rows = []
    for gpu in status_body.get("gpus", []):
        used = sum(
            _first(h.get("memory_gb"), h.get("declared_memory_gb")) or 0.0 for h in gpu["held_by"]
        )
        rows.append(
            {
                "node": gpu["node"],
                "index": gpu["index"],
                "used_gb": round(used, 6),
                "threshold_gb": round(gpu["memory_gb"] * threshold, 6),
                "total_gb": gpu["memory_gb"],
                "simulated": gpu["simulated"],
                "held_by": [h["selection"] for h in gpu["held_by"]],
            }
        )
    return rows


def gpu_line(row: Row) -> str:
    """`fovea-gpu-0/0: 1.2 / 19.2 / 24.0 GB used/threshold/total (simulated)`."""
    kind = "simulated" if row["simulated"] else "real"
    return (
        f"{row['node']}/{row['index']}: {gb(row['used_gb'])} / {gb(row['threshold_gb'])} / "
        f"{gb(row['total_gb'])} GB used/threshold/total ({kind})"
    )


def budget_rows(body: dict[str, Any]) -> list[Row]:
    """`validate`: one row per task of the budget (POST /api/models/validate)."""
    placements = body.get("placements", {})
    rows = []
    for task, need in sorted(body.get("model_requirements", {}).items()):
        place = placements.get(task, {})
        rows.append(
            {
                "task": task,
                "model": need.get("model_name"),
                "vram_gb": need.get("vram_gb"),
                "outcome": place.get("outcome"),
                "node": place.get("node"),
                "gpu_index": place.get("gpu_index"),
                "decided_by": place.get("decided_by"),
                "reason": place.get("reason"),
            }
        )
    return rows


def budget_summary(body: dict[str, Any]) -> str:
    """`valid: required 2.0 GB of 19.2 GB allowed (80% of 24.0 GB)`."""
    verdict = "valid" if body["valid"] else "NOT valid"
    return (
        f"{verdict}: required {gb(body['total_required_gb'])} GB of "
        f"{gb(body['max_allowed_gb'])} GB allowed "
        f"({body['threshold']:.0%} of {gb(body['total_vram_gb'])} GB)"
    )


def quota_line(body: dict[str, Any]) -> str | None:
    """`validate`: the namespace's GPU-memory quota, when it has one, and what it refused."""
    quota = body.get("quota") or {}
    if quota.get("gpu_memory_quota_gb") is None:
        return None
    line = (
        f"quota: namespace {quota['namespace']} may hold {gb(quota['gpu_memory_quota_gb'])} GB "
        f"of GPU memory, {gb(quota.get('used_gb'))} GB held"
    )
    refused = quota.get("quota_exceeded") or []
    return line + (f"; refused for it: {', '.join(refused)}" if refused else "")


def describe_fields(body: dict[str, Any], now: datetime | None = None) -> list[tuple[str, str]]:
    """`describe`: the label/value lines of a task (GET /api/models/describe)."""
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    runtime = status.get("runtime") or {}
    option = body["options"].get(body.get("selected") or "", {})
    load = body.get("load") or {}
    node, index = status.get("node"), gpu_index(status)
    where = f"{node} GPU {index}" if node and index is not None else node
    last_used = runtime.get("lastUsed") or status.get("lastUsed")
    load_time = _first(runtime.get("loadTimeSeconds"), status.get("loadTimeSeconds"))
    fields = [
        ("Task", body["task_type"]),
        ("Selection", body.get("selection")),
        ("Model", body.get("selected")),
        ("Model id", option.get("model_id")),
        ("Framework", option.get("framework")),
        ("Priority", spec.get("priority")),
        ("Load policy", body.get("load_policy") or spec.get("loadPolicy")),
        ("Wanted", spec.get("wanted")),
        ("Phase", status.get("phase")),
        ("Message", status.get("message")),
        ("Load", f"{load['state']}: {load['reason']}" if load.get("reason") else load.get("state")),
        ("Node", where),
        ("Device", runtime.get("device") or status.get("device")),
        ("Pod", status.get("pod") or runtime.get("pod")),
        (
            "Memory",
            f"{gb(_first(runtime.get('measuredMemoryGb'), status.get('measuredMemoryGb')))} GB "
            f"measured / {gb(status.get('declaredMemoryGb', option.get('declared_memory_gb')))} "
            "GB declared",
        ),
        ("Load time", seconds(load_time)),
        ("Last used", age(last_used, now)),
    ]
    if status.get("weights"):
        at = [label for label, _ in fields].index("Pod") + 1
        fields.insert(at, ("Weights", weights(status)))
    return [(label, text(value)) for label, value in fields]


def weights(status: dict[str, Any]) -> str:
    """status.weights in one line: phase, source, and bytes (docs/weights.md)."""
    from fovea.usercli.progress import size

    w = status.get("weights") or {}
    phase, source = str(w.get("phase")), w.get("source") or ""
    if phase == WeightsPhase.FAILED:
        return f"Failed: {w.get('message') or 'unknown'} ({source})"
    total = f" of {size(w['bytesTotal'])}" if w.get("bytesTotal") is not None else ""
    if phase == WeightsPhase.FETCHING:
        rate = f" at {size(w['bytesPerSecond'])}/s" if w.get("bytesPerSecond") else ""
        return f"Fetching {source}: {size(w.get('bytesDone'))}{total}{rate}"
    fetched = size(w.get("fetchedBytes"))
    sha = f", sha256 {str(w['sha256'])[:12]}…" if w.get("sha256") else ""
    return f"{phase} {source} ({size(w.get('bytesDone'))}, fetched {fetched} this start{sha})"


def switch_title(body: dict[str, Any]) -> str | None:
    """`describe`: the last switch in one line (status.lastSwitch), None when there is none."""
    record = (body.get("status") or {}).get("lastSwitch")
    if not record:
        return None
    before = record.get("from") or "nothing (first use)"
    total = record.get("totalSeconds")
    phases = record.get("phases") or []
    end = phases[-1]["name"] if total is not None and phases else None
    took = f"{total:.3f}s to {end}" if end else "under way"
    return f"{before} -> {record.get('model')}: {took}"


def switch_rows(body: dict[str, Any]) -> list[Row]:
    """`describe`: each step of the last switch, when, and the seconds since the step before."""
    record = (body.get("status") or {}).get("lastSwitch") or {}
    rows: list[Row] = []
    before: datetime | None = None
    for step in record.get("phases") or []:
        at = datetime.fromisoformat(str(step["at"]).replace("Z", "+00:00"))
        took = None if before is None else f"+{(at - before).total_seconds():.3f}s"
        rows.append({"phase": step.get("name"), "at": step.get("at"), "took": took})
        before = at
    return rows


def condition_rows(body: dict[str, Any]) -> list[Row]:
    return [
        {
            "type": c.get("type"),
            "status": c.get("status"),
            "reason": c.get("reason"),
            "message": c.get("message"),
            "since": c.get("lastTransitionTime"),
        }
        for c in (body.get("status") or {}).get("conditions", [])
    ]


def event_rows(body: dict[str, Any], now: datetime | None = None) -> list[Row]:
    return [
        {
            "last_seen": age(e.get("last_seen"), now),
            "type": e.get("type"),
            "reason": e.get("reason"),
            "object": e.get("object"),
            "message": e.get("message"),
        }
        for e in body.get("events", [])
    ]


def progress(view: dict[str, Any], model: str) -> tuple[str, str | None]:
    """Where a wait stands: ("ready" | "failed" | "pending", a line for people).

    `view` is the task's entry of GET /api/models/tasks. Ready and failed
    are the API's own judgement (`load`, as `/select?wait=` decides).
    """
    if view.get("selected") != model:
        return "failed", f"the selection changed to {view.get('selected')!r} meanwhile"
    status = view.get("status") or {}
    runtime = status.get("runtime") or {}
    load = view.get("load") or {}
    state = str(load.get("state") or "pending")
    if state == "failed":  # the API's words, as /select?wait= answers them
        reason = str(load.get("reason") or status.get("message") or "unknown reason")
        return state, str(load.get("message") or failed_to_load(reason))
    if status.get("model") != model or status.get("observedGeneration") != view.get("generation"):
        return state, "Pending: the operator has not acted on the change yet"
    parts = [str(status.get("phase", Phase.PENDING))]
    same_pod = runtime.get("pod") is not None and runtime.get("pod") == status.get("pod")
    if same_pod and runtime.get("state") != status.get("phase"):
        parts.append(f"pod {runtime['state']}")
    node, index = status.get("node"), gpu_index(status)
    if node:
        parts.append(f"on {node}" + (f" GPU {index}" if index is not None else ""))
    if status.get("message"):
        parts.append(str(status["message"]))
    return state, " · ".join(parts)


# --- formatting ----------------------------------------------------------------------------------


def gb(value: float | None) -> str:
    """A GB figure by the one rounding rule (domain/units.py): 0.06, 0.5, 19.2, 102.4."""
    return "-" if value is None else format_gb(value)


def seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f}s"


def text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def age(timestamp: str | None, now: datetime | None = None) -> str | None:
    """`42s ago`, `5m ago`, `3h ago`, `2d ago` from an RFC 3339 time; None when unknown."""
    if not timestamp:
        return None
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    delta = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{delta // size}{unit} ago"
    return f"{delta}s ago"


def gpu_index(status: dict[str, Any]) -> int | None:
    """The GPU the selection holds (gpuIndex), else the one the operator planned for it."""
    index: int | None = _first(status.get("gpuIndex"), status.get("plannedGpuIndex"))
    return index


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


# --- predict --------------------------------------------------------------------------------------

# The inference route's headers naming who answered (docs/inference.md).
HEADER_MODEL = "x-fovea-model"
HEADER_POD = "x-fovea-pod"
HEADER_HELD = "x-fovea-held-ms"
HEADER_SWITCHING = "x-fovea-switching"


def answered_by(headers: dict[str, str]) -> Row:
    """`predict`: who answered, from the route's headers (lower-cased names)."""
    held = headers.get(HEADER_HELD)
    return {
        "model": headers.get(HEADER_MODEL),
        "pod": headers.get(HEADER_POD),
        "held_ms": int(held) if held is not None and held.isdigit() else None,
        "switching": headers.get(HEADER_SWITCHING) == "true",
    }


def answered_line(task: str, who: Row) -> str:
    """`object_detection: answered by yolov8s (pod fovea-...), held 0 ms`."""
    held = "-" if who["held_ms"] is None else f"{who['held_ms']} ms"
    line = f"{task}: answered by {text(who['model'])} (pod {text(who['pod'])}), held {held}"
    return line + (" (the previous model, during a switch)" if who["switching"] else "")


def prediction(task: str, status: int, who: Row, body: bytes) -> Row:
    """`predict -o json|yaml`: who answered, and the answer (parsed when it is JSON)."""
    try:
        answer: Any = json.loads(body)
    except ValueError:
        answer = body.decode("utf-8", "replace")
    return {"task": task, "status": status, **who, "answer": answer}
