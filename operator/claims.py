"""Which ResourceClaims the dra mode needs, and what to write to get them (pure).

In the `dra` sharing mode every model pod on a GPU references the claim of its
namespace, GPU and sharing config (`fovea.domain.dra.claim_for`). This module
turns the pass's desired pods, the pods that exist and the claims that exist
into the claim writes: create the claims desired pods need, keep every claim
a pod still references (a pod on its way out holds its device until it is
gone), add the selections using a claim to its owners (garbage collection removes
a claim whose selections are all deleted), and delete the managed claims no
pod needs any more. A pod whose claim is written in a pass is created in
the next one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fovea.domain import dra
from fovea.domain.nodes import unschedulable

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

    @property
    def pending(self) -> frozenset[Key]:
        """Claims written this pass: their pods wait one pass, so the scheduler sees them
        as they are (a claim it does not know yet, or changes under it, delays the pod)."""
        made = {(b["metadata"]["namespace"], b["metadata"]["name"]) for b in self.create}
        return frozenset(made | {key for key, _ in self.owners})


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


def waiting(
    uses: Iterable[ClaimUse],
    creating: Iterable[Key],
    writes: ClaimWrites,
    pods: Iterable[Raw],
) -> frozenset[Key]:
    """The selections (namespace, name) whose new pod waits for a later pass.

    A pod whose claim is written this pass waits one pass (`ClaimWrites.pending`). And one
    pod at a time is scheduled with a claim: the scheduler allocates a claim for the first
    pod and then writes each pod into its `reservedFor`; a second pod scheduled meanwhile
    finds the claim "being allocated" or changed under it, and waits out a backoff. So a
    new pod waits while another pod of its claim is not yet on a node (a pod the scheduler
    refused does not count: it may wait for room for long). `creating`: the selections
    about to create their pod.
    """
    busy = {
        (str(p["metadata"]["namespace"]), name)
        for p in pods
        if not (p.get("spec") or {}).get("nodeName")
        and not p["metadata"].get("deletionTimestamp")
        and unschedulable(p) is None
        for name in dra.claim_names(p)
    }
    wanting = set(creating)
    out: set[Key] = set()
    for use in sorted(uses, key=lambda u: (u.claim.namespace, u.selection)):
        key, sel = use.claim.key, (use.claim.namespace, use.selection)
        if sel not in wanting:
            continue
        if key in writes.pending or key in busy:
            out.add(sel)
        else:
            busy.add(key)  # this one goes now; the claim's next pod waits for it
    return frozenset(out)


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
