"""dra mode, pure: claims are created for desired pods, kept while a pod holds them, owned by the
selections using them, and deleted once no pod needs them; pods reference them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from fovea.domain import constants as c
from fovea.domain import dra
from fovea.domain.dra import DraSharing
from fovea.domain.resources import SelectionSpec, SharingMode
from fovea.operator.claims import ClaimUse, plan_claims
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Catalog, Selection, World, reconcile, sharing_mode

DEVICE = dra.Device(dra.DRIVER, "n", "gpu-0", "n", "GPU-a", 0)
OTHER = dra.Device(dra.DRIVER, "n", "gpu-1", "n", "GPU-b", 1)


def pod_with(claim: str, ns: str = "ns", name: str = "p") -> dict[str, Any]:
    pod_claims, _ = dra.pod_claims(claim)
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"resourceClaims": pod_claims}}


def test_a_desired_pods_claim_is_created_owned_by_its_selection() -> None:
    claim = dra.claim_for("ns", "a", DEVICE, DraSharing.TIME_SLICING, 4)
    writes = plan_claims([ClaimUse(claim, "a", "uid-a")], [], [])
    assert len(writes.create) == 1
    assert [o["uid"] for o in writes.create[0]["metadata"]["ownerReferences"]] == ["uid-a"]
    assert writes.delete == ()
    assert plan_claims([ClaimUse(claim, "a", "uid-a")], [], list(writes.create)).create == ()


def test_a_claim_stays_while_a_pod_holds_it_and_goes_after() -> None:
    old = dra.claim_for("ns", "a", OTHER, DraSharing.TIME_SLICING, 4)
    body = dra.claim_body(old, [("a", "uid-a")])
    held = plan_claims([], [pod_with(old.name)], [body])
    assert held.delete == () and old.key in held.needed
    gone = plan_claims([], [], [body])
    assert gone.delete == (old.key,)
    terminating = {**body, "metadata": {**body["metadata"], "deletionTimestamp": "now"}}
    assert plan_claims([], [], [terminating]).delete == ()


# --- reconcile in dra mode -------------------------------------------------------------


def gpu_node(name: str, count: int, memory_gib: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                c.NODE_LABEL_GPU_COUNT: str(count),
                c.NODE_LABEL_GPU_MEMORY_MIB: str(memory_gib * 1024),
            },
        },
        "status": {
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", c.RESOURCE_GPU: "8"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def world(**extra: Any) -> World:
    catalog = {
        "tasks": {
            "det": {"options": {"m": {"modelId": "m", "framework": "pytorch", "vramGb": 10}}}
        },
    }
    sel = Selection("ns", "det", "uid-det", 1, SelectionSpec(task="det", model="m"), {})
    return World(
        catalogs={("ns", "default"): Catalog("ns", "default", catalog)},
        selections=[sel],
        nodes=[gpu_node("n", 2, 24)],
        pods=[],
        now=datetime(2026, 1, 1, tzinfo=UTC),
        **extra,
    )


def test_auto_mode_is_dra_when_the_cluster_speaks_it_and_a_setting_wins() -> None:
    auto = PodSettings(sharing_mode=None)
    assert sharing_mode(world(), auto) == SharingMode.TIME_SLICED
    assert sharing_mode(world(dra_available=True), auto) == SharingMode.DRA
    assert sharing_mode(world(dra_available=True), PodSettings()) == SharingMode.TIME_SLICED


def test_in_dra_mode_the_pod_references_the_claim_of_its_planned_gpu() -> None:
    w = world(dra_available=True, dra_devices=(DEVICE, OTHER))
    decisions = reconcile(w, PodSettings(sharing_mode=None))
    (d,) = decisions.selections
    assert d.desired_pod is not None and d.create_pod  # with its claim (written first)
    spec = d.desired_pod["spec"]
    resources = spec["containers"][0]["resources"]
    assert c.RESOURCE_GPU not in resources["limits"]
    assert resources["claims"] == [{"name": dra.POD_CLAIM}]
    (claim_body,) = decisions.claims.create
    assert spec["resourceClaims"] == [
        {"name": dra.POD_CLAIM, "resourceClaimName": claim_body["metadata"]["name"]}
    ]
    planned = d.desired_pod["metadata"]["annotations"][c.ANNOTATION_PLANNED_GPU]
    uuid = {"0": "GPU-a", "1": "GPU-b"}[planned]
    selector = claim_body["spec"]["devices"]["requests"][0]["exactly"]["selectors"][0]
    assert uuid in selector["cel"]["expression"]
    actions = decisions.actions()
    assert actions.create_claims == [claim_body] and actions.create == [d.desired_pod]
    # The next pass, with the claim there: nothing more to write.
    again = reconcile(dataclasses.replace(w, claims=[claim_body]), PodSettings(sharing_mode=None))
    assert again.claims.create == () and again.claims.delete == ()


def test_without_a_published_device_a_gpu_is_not_planned_in_dra_mode() -> None:
    decisions = reconcile(
        world(dra_available=True, dra_devices=(OTHER,)), PodSettings(sharing_mode=None)
    )
    (d,) = decisions.selections
    assert d.desired_pod is not None
    assert d.desired_pod["metadata"]["annotations"][c.ANNOTATION_PLANNED_GPU] == "1"


def test_device_plugin_mode_writes_no_claims_and_removes_unheld_ones() -> None:
    stale = dra.claim_body(dra.claim_for("ns", "a", DEVICE, DraSharing.TIME_SLICING, 4), [])
    decisions = reconcile(world(claims=[stale]), PodSettings())
    (d,) = decisions.selections
    assert d.desired_pod is not None and "resourceClaims" not in d.desired_pod["spec"]
    assert decisions.claims.create == ()
    assert decisions.claims.delete == (("ns", stale["metadata"]["name"]),)
