"""Which ResourceClaims the dra mode needs, and what to write to get them (pure).

In the `dra` sharing mode a selection's model pod on a GPU references the claim
of its selection, GPU and sharing config (`fovea.domain.dra.claim_for`), owned
by the selection (garbage collection removes it with the selection). This
module turns the pass's desired pods, the pods that exist and the claims that
exist into the claim writes: create the claims desired pods need, keep every
claim a pod still references (a pod on its way out holds its device until it
is gone), and delete the managed claims no pod needs any more. The executor
writes the claims of a pass before its pods, so a new pod's claim exists when
the scheduler sees the pod. A pod is never held back for its claim: a plan
that waits is re-made on the next pass, and selections without pods would
move from GPU to GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fovea.domain import dra

Key = tuple[str, str]  # (namespace, name)
Raw = Mapping[str, Any]


@dataclass(frozen=True)
class ClaimUse:
    """One selection's desired pod uses `claim`."""

    claim: dra.Claim
    selection: str  # the selection's name
    uid: str  # its uid


@dataclass(frozen=True)
class ClaimWrites:
    create: tuple[dict[str, Any], ...] = ()  # ResourceClaim bodies
    delete: tuple[Key, ...] = ()
    needed: frozenset[Key] = field(default_factory=frozenset)  # claims a pod needs or holds


def plan_claims(
    uses: Iterable[ClaimUse], pods: Iterable[Raw], claims: Sequence[Raw]
) -> ClaimWrites:
    """The claim writes of one pass (see the module docstring).

    `pods`: the managed model pods that exist (terminating ones included);
    `claims`: the managed claims that exist.
    """
    wanted: dict[Key, dra.Claim] = {}
    owners: dict[Key, set[tuple[str, str]]] = {}
    for use in uses:
        wanted[use.claim.key] = use.claim
        owners.setdefault(use.claim.key, set()).add((use.selection, use.uid))
    held = {
        (str(pod["metadata"]["namespace"]), name) for pod in pods for name in dra.claim_names(pod)
    }
    existing = {_key(obj): obj for obj in claims}
    create = [
        dra.claim_body(claim, sorted(owners[key]))
        for key, claim in sorted(wanted.items())
        if key not in existing
    ]
    needed = frozenset(wanted) | frozenset(held)
    delete = sorted(
        key
        for key, obj in existing.items()
        if key not in needed and not (obj.get("metadata") or {}).get("deletionTimestamp")
    )
    return ClaimWrites(tuple(create), tuple(delete), needed)


def _key(obj: Raw) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
