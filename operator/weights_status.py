"""status.weights of a selection: the fetch's own report, else what its pod's status says.

Pure. The `fetch-weights` init container reports into `status.runtime.weights`
(with `runtime.pod` its pod); the operator copies that only from the pod it wants,
as it does the rest of `runtime`. What the fetcher cannot say itself comes from the
pod: a missing credentials Secret (the kubelet's CreateContainerConfigError: the
container never starts) or a fetch that exited non-zero without a report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from fovea.domain.conditions import WeightsPhase
from fovea.domain.resources import ModelOption, WeightsReport
from fovea.domain.units import format_bytes
from fovea.operator.weights_pod import FETCH_CONTAINER

Raw = Mapping[str, Any]
CONFIG_ERROR = "CreateContainerConfigError"


def weights_status(
    option: ModelOption,
    runtime: Raw,
    current: bool,
    pod: Raw | None,
    secret: str | None,
    previous: object = None,
) -> WeightsReport | None:
    """The selection's status.weights for the pod it wants (None: the option has no weights).

    `runtime`: status.runtime as stored; `current`: whether it is the wanted pod's report;
    `pod`: the wanted pod, once it exists; `secret`: the catalog's credentials Secret;
    `previous`: status.weights as stored. A failed fetch is restarted with backoff
    (restartPolicy Always): until a retry gets the weights, it stays Failed with its reason.
    """
    if option.weights is None:
        return None
    reported = _report(runtime.get("weights")) if current else None
    if reported is not None and _older_than(reported, pod):
        reported = None  # left by an earlier pod of the same name (the same model re-selected)
    fetch = _fetch_status(pod)
    waiting = (fetch.get("state") or {}).get("waiting") or {}
    if waiting.get("reason") == CONFIG_ERROR:
        said = str(waiting.get("message") or CONFIG_ERROR)
        why = f"Secret {secret} not found" if secret and _names_missing(said, secret) else said
        return _failed(option, reported, f"{why} ({FETCH_CONTAINER}: {CONFIG_ERROR})")
    if reported is not None:
        if reported.phase == WeightsPhase.FAILED:
            return reported
        exited = _failed_exit(fetch)
        if exited is not None and reported.phase != WeightsPhase.CACHED:
            return _failed(option, reported, exited)
        before = _report(previous)
        retrying = _last_exit(fetch) is not None and reported.phase == WeightsPhase.FETCHING
        if retrying and before is not None and before.phase == WeightsPhase.FAILED:
            return reported.model_copy(
                update={"phase": WeightsPhase.FAILED, "message": _retrying(before, fetch)}
            )
        return reported
    exited = _failed_exit(fetch)
    if exited is not None:
        return _failed(option, None, exited)
    if pod is None or not (pod.get("spec") or {}).get("nodeName"):
        return None  # no pod on a node yet: nothing fetches
    if _completed(fetch):
        return WeightsReport(phase=WeightsPhase.CACHED, source=option.weights)
    return WeightsReport(
        phase=WeightsPhase.FETCHING,
        source=option.weights,
        message=f"{FETCH_CONTAINER} is starting",
    )


def progress_text(report: WeightsReport) -> str:
    """Bytes and rate in a few words: '1.2 GB of 4.0 GB at 35.0 MB/s' (domain/units.py)."""
    done = format_bytes(report.bytes_done)
    total = f" of {format_bytes(report.bytes_total)}" if report.bytes_total is not None else ""
    rate = report.bytes_per_second
    speed = f" at {format_bytes(rate)}/s" if rate else ""
    return f"{done}{total}{speed}"


def _report(raw: object) -> WeightsReport | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return WeightsReport.model_validate(raw)
    except ValidationError:
        return None


def _older_than(report: WeightsReport, pod: Raw | None) -> bool:
    """Whether `report` was written before `pod` was created (both RFC 3339, UTC, seconds)."""
    created = ((pod or {}).get("metadata") or {}).get("creationTimestamp")
    return bool(created and report.updated_at and report.updated_at < str(created))


def _fetch_status(pod: Raw | None) -> Raw:
    for status in ((pod or {}).get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") == FETCH_CONTAINER:
            return dict(status)
    return {}


def _failed_exit(status: Raw) -> str | None:
    """`fetch-weights exited with code N: ...` when its last run failed (and it is not
    running again: a retry in progress reports for itself)."""
    if (status.get("state") or {}).get("running") is not None:
        return None
    for key in ("state", "lastState"):
        ended = (status.get(key) or {}).get("terminated") or {}
        code = ended.get("exitCode")
        if code not in (None, 0):
            said = ended.get("message") or ended.get("reason") or "no message"
            return f"{FETCH_CONTAINER} exited with code {code}: {str(said).strip()}"
    return None


def _last_exit(status: Raw) -> int | None:
    """The exit code of the run before this one, when it failed."""
    code = ((status.get("lastState") or {}).get("terminated") or {}).get("exitCode")
    return None if code in (None, 0) else int(code)


def _retrying(before: WeightsReport, status: Raw) -> str:
    said = (before.message or "unknown").split(" (retry ")[0]
    return f"{said} (retry {int(status.get('restartCount') or 0)} in progress)"


def _completed(status: Raw) -> bool:
    ended = (status.get("state") or {}).get("terminated") or {}
    return ended.get("exitCode") == 0


def _names_missing(message: str, secret: str) -> bool:
    lowered = message.lower()
    return secret in message and "not found" in lowered


def _failed(option: ModelOption, reported: WeightsReport | None, message: str) -> WeightsReport:
    base = reported or WeightsReport(phase=WeightsPhase.FAILED, source=option.weights)
    return base.model_copy(update={"phase": WeightsPhase.FAILED, "message": message})
