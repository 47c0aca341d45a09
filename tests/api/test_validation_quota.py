"""A quota refusal in /validate names the quota, not every GPU's holders (issue 28). Pure."""

from __future__ import annotations

import dataclasses

from api_builders import selection, state
from fovea.api.validation import validate_body
from fovea.domain.quota import Quota
from fovea.usercli.views import quota_line

NOW = 1_800_000_000.0
QUOTA = (
    "Namespace 'default' has a GPU-memory quota of 0.25 GB and 0.0 GB of it is held by "
    "selections of higher or equal rank: yolov8n needs 0.5 GB"
)


def test_a_predicted_quota_refusal_says_the_quota_and_lists_no_gpus() -> None:
    st = state([selection("object_detection", "yolov8n")])
    quota = Quota(gpu_memory_gib=0.25)
    st = dataclasses.replace(st, quota=quota, quotas={"default": quota})
    body = validate_body(st, NOW)
    assert body["valid"] is False
    [warning] = [w for w in body["warnings"] if w.startswith("object_detection:")]
    assert warning == (
        f"object_detection: yolov8n (0.5 GB) is over its namespace's GPU-memory quota: {QUOTA}"
    )
    assert body["quota"]["gpu_memory_quota_gb"] == 0.25
    assert quota_line(body) == (
        "quota: namespace default may hold 0.25 GB of GPU memory, 0.0 GB held"
    )


def test_the_operators_quota_refusal_says_the_quota() -> None:
    status = {
        "phase": "Unschedulable",
        "message": QUOTA,
        "model": "yolov8n",
        "observedGeneration": 1,
        "conditions": [
            {"type": "Scheduled", "status": "False", "reason": "QuotaExceeded", "message": QUOTA}
        ],
    }
    st = state([selection("object_detection", "yolov8n", status=status)])
    quota = Quota(gpu_memory_gib=0.25)
    body = validate_body(dataclasses.replace(st, quota=quota, quotas={"default": quota}), NOW)
    [warning] = [w for w in body["warnings"] if w.startswith("object_detection:")]
    assert warning == (
        "object_detection: yolov8n (0.5 GB) is over its namespace's GPU-memory quota "
        f"(the operator's decision): {QUOTA}"
    )
    assert " holds " not in warning
    assert quota_line(body) == (
        "quota: namespace default may hold 0.25 GB of GPU memory, 0.0 GB held; "
        "refused for it: object_detection"
    )


def test_no_quota_no_line() -> None:
    assert quota_line({"quota": None}) is None
