"""Which ResourceClaims the dra mode needs, and what to write to get them (pure).

In the `dra` sharing mode every model pod on a GPU references the claim of its
namespace, GPU and sharing config (`fovea.domain.dra.claim_for`). This module
turns the pass's desired pods, the pods that exist and the claims that exist
into the claim writes: create the claims desired pods need, keep every claim
a pod still references (a pod on its way out holds its device until it is
gone), add the selections using a claim to its owners (garbage collection removes
a claim whose selections are all deleted), and delete the managed claims no
pod needs any more. The executor writes the claims of a pass before its
pods, so a new pod's claim exists when the scheduler sees the pod. A pod is
never held back for its claim: a plan that waits is re-made on the next
pass, and selections without pods would move from GPU to GPU.
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
    owners: tuple[tuple[Key, dict[str, Any]], ...] = ()  # claims with more owners (replace)
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
    patches = []
    for key in sorted(wanted.keys() & existing.keys()):
        have = dra.owners_of(existing[key])
        if not {uid for _, uid in owners[key]} <= {uid for _, uid in have}:
            # Owners are only added: every write to a claim races with the scheduler's
            # reservation of it (a conflict costs a pod a scheduling backoff), and the
            # garbage collector drops owners that are deleted.
            want = dra.owner_references(sorted(owners[key]))
            patches.append((key, with_owners(existing[key], want)))
    needed = frozenset(wanted) | frozenset(held)
    delete = sorted(
        key
        for key, obj in existing.items()
        if key not in needed and not (obj.get("metadata") or {}).get("deletionTimestamp")
    )
    return ClaimWrites(tuple(create), tuple(patches), tuple(delete), needed)


def with_owners(claim: Raw, owners: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The whole claim with `owners` added to its own, for a replace (PUT) at its
    resourceVersion.

    Not a patch: the API server re-encodes a patched object, which rewrites the bytes of
    the driver's opaque parameters, and then refuses the (immutable) spec as changed.
    """
    have = dra.owners_of(claim)
    added = [(str(o["name"]), str(o["uid"])) for o in owners]
    body = {k: v for k, v in claim.items() if k != "status"}
    body["metadata"] = {
        **claim["metadata"],
        "ownerReferences": dra.owner_references(sorted(set(have) | set(added))),
    }
    return body


def _key(obj: Raw) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
