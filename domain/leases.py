"""Session leases: while a person has a task open, its model is not evicted for its peers.

The annotation tool renews `POST /api/models/lease/{task}?ttl=300` while the
task is open and `DELETE`s it when closed. Each lease is a Kubernetes Lease
(coordination.k8s.io/v1) in the selection's namespace, named
`fovea-session-<selection>` and labelled `fovea.dev/session-lease=true`: it
survives API restarts and shows in `kubectl get leases`. It is live until
`renewTime + leaseDurationSeconds`.

The planner evicts only models it outranks, by (priority, last use); a live
lease makes its model's last use "now, for ever", so a selection of lower or
equal priority never evicts it (a higher priority still does; moves to
another GPU are still allowed).

Pure: bodies and decisions; the API and the operator do the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fovea.domain.budget import epoch_seconds
from fovea.domain.constants import GROUP, LABEL_SELECTION, LABEL_TASK
from fovea.domain.placement import Demand

LABEL_SESSION = f"{GROUP}/session-lease"
SELECTOR = f"{LABEL_SESSION}=true"
PREFIX = "fovea-session-"
MIN_TTL_S = 5
MAX_TTL_S = 24 * 3600
_MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


def lease_name(selection: str) -> str:
    """The Lease of a selection's session (DNS-1123: the selection's name is already)."""
    return f"{PREFIX}{selection}"[:253]


def lease_body(
    selection: str, task: str, ttl_s: int, now: datetime, holder: str = "annotation-tool"
) -> dict[str, Any]:
    """A Lease for the selection's session, renewed at `now` for `ttl_s` seconds."""
    stamp = now.astimezone(UTC).strftime(_MICRO)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(selection),
            "labels": {LABEL_SESSION: "true", LABEL_SELECTION: selection, LABEL_TASK: task},
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": ttl_s,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }


def expires_at(lease: Mapping[str, Any]) -> float:
    """Epoch seconds at which the lease ends (0 when it has no renew time)."""
    spec = lease.get("spec") or {}
    renewed = epoch_seconds(spec.get("renewTime") or spec.get("acquireTime"))
    return renewed + float(spec.get("leaseDurationSeconds") or 0) if renewed else 0.0


def expiry_text(lease: Mapping[str, Any]) -> str:
    """`expires_at` as an RFC 3339 time."""
    return (datetime.fromtimestamp(0, UTC) + timedelta(seconds=expires_at(lease))).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def live_selections(leases: Iterable[Mapping[str, Any]], now: float) -> frozenset[str]:
    """ "namespace/selection" keys of the session leases still live at `now`."""
    out = set()
    for lease in leases:
        meta = lease.get("metadata") or {}
        selection = (meta.get("labels") or {}).get(LABEL_SELECTION)
        if selection and expires_at(lease) > now:
            out.add(f"{meta.get('namespace', '')}/{selection}")
    return frozenset(out)


def protect(demands: Iterable[Demand], leased: frozenset[str]) -> list[Demand]:
    """The demands with each leased one ranked "used now, for ever" (see the module docstring)."""
    return [replace(d, last_used=math.inf) if d.key in leased else d for d in demands]
