"""One plan: `/validate`'s verdict and the what-if plan are the operator's next decisions.

Generated worlds (several namespaces, GPU-memory quotas from annotations and the
cluster default, session leases, nodes with little CPU room, cordoned nodes,
priorities, models already running, warm switches on or off) are fed to both
sides as each reads them: the operator's `reconcile` gets its `World`, the API its watch stores
(`build_state`), and `/validate` (`validate_body`) and the what-if route
(`what_if_body`) must say what the operator decides next (pure, no cluster).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import NOW, apply, catalog_spec, cpu_node, gpu_node, option, running
from fovea.api.state import build_state, parse_selection
from fovea.api.validation import validate_body
from fovea.api.what_if import what_if_body
from fovea.domain import constants as c
from fovea.domain import leases
from fovea.domain.conditions import Reason
from fovea.domain.demand import threshold_of
from fovea.domain.quota import Quota, quota_from_annotations
from fovea.domain.resources import CatalogSpec, DevicePolicy, Phase, SelectionSpec
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import Catalog, Decisions, Selection, World, reconcile

NAMESPACES = ("team-a", "team-b", "team-c")
TASKS = ("det", "sum", "track")
# name -> (GiB, CPU memory GiB or None): "s" and "m" may run on the CPU.
OPTIONS = {"s": (2.0, 4.0), "m": (6.0, 8.0), "l": (12.0, None), "xl": (20.0, None)}
SETTINGS = PodSettings(image="ghcr.io/fovea-models/model-pod:0.1.0")


@dataclass(frozen=True)
class Case:
    world: World  # the operator's input
    namespaces: dict[str, dict[str, Any]]  # the Namespace objects (quota annotations)
    default_quota: Quota
    lease_objects: list[dict[str, Any]]
    warm: bool = False  # the operator's warm switches (a setting both processes read)

    @property
    def settings(self) -> PodSettings:
        return replace(SETTINGS, warm_switches=self.warm)


def _node(draw: st.DrawFn, i: int) -> dict[str, Any]:
    count = draw(st.integers(1, 2))
    node = gpu_node(f"gpu-{i}", draw(st.sampled_from([8, 16, 24])), count)
    replicas = draw(st.sampled_from([1, 2, 8]))  # time-slicing: GPU slots per GPU
    node["metadata"]["labels"][c.NODE_LABEL_GPU_REPLICAS] = str(replicas)
    node["status"]["allocatable"][c.RESOURCE_GPU] = str(count * replicas)
    node["status"]["allocatable"]["cpu"] = draw(st.sampled_from(["1", "2", "16"]))
    # Little memory room too: a warm pod's request (its group's largest) may not fit.
    node["status"]["allocatable"]["memory"] = draw(st.sampled_from(["12Gi", "24Gi", "64Gi"]))
    if draw(st.integers(0, 5)) == 0:
        node["spec"]["unschedulable"] = True  # cordoned
    return node


def _quota_annotations(draw: st.DrawFn) -> dict[str, str]:
    ann = {}
    gib = draw(st.sampled_from([None, "4", "8", "16", "30Gi"]))
    if gib is not None:
        ann[c.ANNOTATION_GPU_MEMORY_QUOTA] = gib
    ceiling = draw(st.sampled_from([None, "50", "200"]))
    if ceiling is not None:
        ann[c.ANNOTATION_MAX_PRIORITY] = ceiling
    return ann


def _lease(namespace: str, selection: str, renewed_s_ago: int) -> dict[str, Any]:
    body = leases.lease_body(selection, "t", 300, NOW - timedelta(seconds=renewed_s_ago))
    body["metadata"]["namespace"] = namespace
    return body


def _other_pod(draw: st.DrawFn, node: str, i: int) -> dict[str, Any]:
    """A pod of someone else's on a node: it holds CPU the model pods cannot have."""
    cpu = draw(st.sampled_from(["250m", "1", "1500m"]))
    return {
        "metadata": {"name": f"other-{i}", "namespace": "kube-system"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
        },
        "status": {"phase": "Running"},
    }


@st.composite
def cases(draw: st.DrawFn) -> Case:
    # With warm switches, a task's options form one warm group: each pod requests the
    # group's largest memory (8 GiB), and both sides must count that.
    warm = draw(st.booleans())
    nodes = [_node(draw, i) for i in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        nodes.append(cpu_node())
    inference_of = {}
    catalogs = {}
    for ns in NAMESPACES:
        inference = {
            "offloadThreshold": draw(st.sampled_from([0.7, 0.8, 0.9])),
            "warmupOnStartup": True,
        }
        if draw(st.integers(0, 3)) == 0:
            inference["maxMemoryPerModel"] = 16
        inference_of[ns] = inference
        options = {
            name: option(gib, modelId=name, **({"cpuMemoryGb": cpu} if cpu else {}))
            for name, (gib, cpu) in OPTIONS.items()
        }
        spec = catalog_spec({task: options for task in TASKS}, inference)
        catalogs[(ns, "default")] = Catalog(ns, "default", spec, uid=f"uid-cat-{ns}")
    selections = []
    for ns in NAMESPACES:
        for task in TASKS:
            if draw(st.integers(0, 3)) == 0:
                continue
            model = draw(st.sampled_from([None, *OPTIONS]))
            spec = SelectionSpec(
                task=task,
                model=model,
                priority=draw(st.sampled_from([0, 100, 500])),
                device_policy=draw(st.sampled_from(list(DevicePolicy))),
            )
            used = draw(st.integers(0, 7200))
            status = {"lastUsed": (NOW - timedelta(seconds=used)).strftime("%Y-%m-%dT%H:%M:%SZ")}
            selections.append(Selection(ns, task, f"uid-{ns}-{task}", 1, spec, status))
    namespaces = {
        ns: {"metadata": {"name": ns, "annotations": _quota_annotations(draw)}} for ns in NAMESPACES
    }
    gib = draw(st.sampled_from([None, 6.0, 14.0]))
    default = Quota(gib, draw(st.sampled_from([None, 100])))
    quotas = {
        ns: quota_from_annotations(obj["metadata"]["annotations"], default)
        for ns, obj in namespaces.items()
    }
    world = World(catalogs, selections, nodes, [], NOW, quotas=quotas)
    # Some models already run: one operator pass, its pods bound where it planned them.
    if draw(st.booleans()):
        world = apply(world, reconcile(world, replace(SETTINGS, warm_switches=warm)).actions())
        world = replace(world, pods=[running(p) for p in world.pods])
        # Then the world moves on: priorities and models change (generation 2: the operator's
        # statuses are not current, so /validate predicts rather than quotes them).
        moved = []
        for sel in world.selections:
            assert sel.spec is not None
            priority = draw(st.sampled_from([sel.spec.priority, sel.spec.priority, 0, 900]))
            model = draw(st.sampled_from([sel.spec.model, sel.spec.model, *OPTIONS]))
            update = {"priority": priority, "model": model}
            moved.append(replace(sel, generation=2, spec=sel.spec.model_copy(update=update)))
        world = replace(world, selections=moved)
    gpu_nodes = [n["metadata"]["name"] for n in nodes]
    others = [_other_pod(draw, node, i) for i, node in enumerate(gpu_nodes) if draw(st.booleans())]
    lease_objects = [
        _lease(sel.namespace, sel.name, draw(st.sampled_from([10, 1000])))
        for sel in world.selections
        if draw(st.booleans())
    ]
    world = replace(
        world,
        node_pods=[*world.pods, *others],
        session_leases=leases.live_selections(lease_objects, NOW.timestamp()),
    )
    return Case(world, namespaces, default, lease_objects, warm)


def api_state(case: Case, namespace: str) -> Any:
    """What the API's watch-fed cache holds in `namespace` (cluster-wide mode)."""
    w = case.world

    def raw_selection(sel: Selection) -> dict[str, Any]:
        assert sel.spec is not None
        meta = {
            "name": sel.name,
            "namespace": sel.namespace,
            "uid": sel.uid,
            "generation": sel.generation,
            "resourceVersion": "1",
        }
        spec = sel.spec.model_dump(by_alias=True, mode="json", exclude_none=True)
        return {"metadata": meta, "spec": spec, "status": dict(sel.status)}

    own = {
        sel.name: parsed
        for sel in w.selections
        if sel.namespace == namespace and (parsed := parse_selection(raw_selection(sel)))
    }
    every_pod = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in w.node_pods}
    return build_state(
        namespace,
        "default",
        {
            cat.name: {"metadata": {"name": cat.name}, "spec": cat.spec}
            for cat in w.catalogs.values()
            if cat.namespace == namespace
        },
        own,
        {n["metadata"]["name"]: n for n in w.nodes},
        {p["metadata"]["name"]: p for p in w.pods if p["metadata"]["namespace"] == namespace},
        {f"{s.namespace}/{s.name}": raw_selection(s) for s in w.selections},
        case.namespaces[namespace],
        {},
        peer_catalogs={
            f"{cat.namespace}/{cat.name}": {"metadata": {"name": cat.name}, "spec": cat.spec}
            for cat in w.catalogs.values()
        },
        node_pods=every_pod,
        namespaces=case.namespaces,
        session_leases={
            f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in case.lease_objects
        },
        default_quota=case.default_quota,
        warm_switches=case.warm,
    )


def on_gpu(decisions: Decisions) -> dict[str, tuple[str, int]]:
    """ "namespace/name" -> (node, GPU index) of every selection the operator puts on a GPU."""
    out = {}
    for d in decisions.selections:
        status = d.status
        if status.node is not None and status.planned_gpu_index is not None:
            out[f"{d.key[0]}/{d.key[1]}"] = (status.node, status.planned_gpu_index)
    return out


def operator_valid(case: Case, decisions: Decisions, namespace: str) -> bool:
    """The operator's verdict on a namespace: every selected model it plans that needs a GPU
    is on one, and it fails none for max_memory_per_model."""
    placed = on_gpu(decisions)
    specs = {(s.namespace, s.name): s for s in case.world.selections}
    for d in decisions.selections:
        if d.key[0] != namespace:
            continue
        spec = specs[d.key].spec
        assert spec is not None
        reasons = {cond.reason for cond in d.status.conditions}
        if Reason.EXCEEDS_MAX_MEMORY in reasons:
            return False
        if not spec.model or spec.device_policy == DevicePolicy.CPU:
            continue
        if d.status.phase in (Phase.PENDING, Phase.UNSELECTED):  # not planned
            continue
        if f"{d.key[0]}/{d.key[1]}" not in placed:
            return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_validate_and_the_what_if_plan_are_the_operators_next_decisions(case: Case) -> None:
    decisions = reconcile(case.world, case.settings)
    placed = on_gpu(decisions)
    for namespace in NAMESPACES:
        state = api_state(case, namespace)
        body = validate_body(state, NOW.timestamp())
        assert body["valid"] == operator_valid(case, decisions, namespace), body["warnings"]
        for task, view in body["placements"].items():
            key = f"{namespace}/{state.by_task[task].name}"
            if view["outcome"] == "gpu":
                assert placed.get(key) == (view["node"], view["gpu_index"]), (key, view)
            else:
                assert key not in placed, (key, view, placed[key])
        plan = what_if_body(state, {}, NOW.timestamp())["plan"]
        told = {m["key"]: (g["node"], g["index"]) for g in plan["gpus"] for m in g["models"]}
        assert told == placed


def test_the_threshold_is_the_lowest_of_the_catalogs_in_use() -> None:
    low = CatalogSpec.model_validate({"inference": {"offloadThreshold": 0.6}})
    assert threshold_of([CatalogSpec(), low]) == 0.6
    assert threshold_of([]) == 0.8


def test_with_warm_switches_validate_counts_a_warm_pod_at_its_groups_memory() -> None:
    """Two small models on a node with 12 GiB of memory: each alone (4 and 2 GiB) fits, but
    as warm pods each requests its group's largest, 8 GiB, and the second does not fit."""
    node = gpu_node("gpu-0", 24, 1)
    node["metadata"]["labels"][c.NODE_LABEL_GPU_REPLICAS] = "8"  # time-slicing: 8 slots
    node["status"]["allocatable"][c.RESOURCE_GPU] = "8"
    node["status"]["allocatable"]["memory"] = "12Gi"
    options = {
        name: option(gib, modelId=name, **({"cpuMemoryGb": cpu} if cpu else {}))
        for name, (gib, cpu) in OPTIONS.items()
    }
    spec = catalog_spec({task: options for task in TASKS}, {"offloadThreshold": 0.9})
    ns = "team-a"
    selections = [
        Selection(ns, task, f"uid-{task}", 1, SelectionSpec(task=task, model=model), {})
        for task, model in (("det", "s"), ("sum", "l"))
    ]
    namespaces = {other: {"metadata": {"name": other, "annotations": {}}} for other in NAMESPACES}
    world = World(
        {(ns, "default"): Catalog(ns, "default", spec, uid="u")}, selections, [node], [], NOW
    )
    verdicts = {}
    for warm in (False, True):
        case = Case(world, namespaces, Quota(None, None), [], warm)
        decisions = reconcile(world, case.settings)
        body = validate_body(api_state(case, ns), NOW.timestamp())
        assert body["valid"] == operator_valid(case, decisions, ns), (warm, body["warnings"])
        verdicts[warm] = (body["valid"], len(on_gpu(decisions)))
    assert verdicts == {False: (True, 2), True: (False, 1)}
