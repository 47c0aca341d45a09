"""The operator against the real local API server: catalogs and selections in, pods out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fovea.domain import constants as c
from kube_testing import Kube, eventually, holds_gpu
from kube_testing import tiny_catalog as catalog
from kube_testing import tiny_option as option

pytestmark = pytest.mark.integration

# Local cluster default: fovea-gpu-0 with 2x24 GiB, fovea-gpu-1 with 1x80 GiB,
# threshold 0.8 -> room for 19.2, 19.2 and 64 GiB.


def fill_gpus(kube: Kube, priority: int) -> None:
    """Fill the three GPUs: c (60 GiB) on the 80 GiB GPU, then a and b (19 GiB each).

    First wait until no earlier test's model pod (another namespace, maybe still
    terminating) holds GPU memory: the planner shares GPUs across namespaces, so
    one would change what is full and what gets evicted.
    """
    others = eventually(lambda: not kube.other_model_pods() or None, 120.0)
    assert others, kube.other_model_pods()
    kube.select("c", "m", priority=priority)
    assert eventually(lambda: len(kube.model_pods()) == 1 or None)
    for task in ("a", "b"):
        kube.select(task, "m", priority=priority)
    assert eventually(lambda: len(kube.model_pods()) == 3 or None)


def test_three_selections_get_three_gpu_pods(kube: Kube, operator: None) -> None:
    kube.apply_catalog(catalog({t: {"small": option(1.0)} for t in ("det", "track", "sum")}))
    for task in ("det", "track", "sum"):
        kube.select(task, "small")
    pods = eventually(lambda: kube.model_pods() if len(kube.model_pods()) == 3 else None)
    assert pods is not None
    for pod in pods:
        assert holds_gpu(pod)
        node = kube.planned_node(pod)
        assert node.startswith("fovea-gpu-")
    phases = eventually(
        lambda: (
            kube.phases()
            if all(p in ("Scheduling", "Loading", "Ready") for p in kube.phases().values())
            and len(kube.phases()) == 3
            else None
        )
    )
    assert phases is not None


def test_model_bigger_than_any_gpu_is_unschedulable_and_disturbs_nothing(
    kube: Kube, operator: None
) -> None:
    kube.apply_catalog(catalog({"det": {"small": option(1.0)}, "sum": {"huge": option(200.0)}}))
    kube.select("det", "small")
    first = eventually(lambda: kube.model_pods() or None)
    assert first is not None
    kube.select("sum", "huge")
    status = eventually(
        lambda: s if (s := kube.status("sum")).get("phase") == "Unschedulable" else None
    )
    assert status is not None
    assert "200.0 GB" in status["message"] and "64.0 GB" in status["message"]
    assert [p["metadata"]["name"] for p in kube.model_pods()] == [
        p["metadata"]["name"] for p in first
    ]


def test_higher_priority_evicts_least_recently_used_with_event(kube: Kube, operator: None) -> None:
    kube.apply_catalog(
        catalog(
            {
                "a": {"m": option(19.0)},
                "b": {"m": option(19.0)},
                "c": {"m": option(60.0)},
                "vip": {"m": option(19.0)},
            }
        )
    )
    fill_gpus(kube, priority=10)
    kube.patch_status("a", {"lastUsed": "2026-01-01T00:00:00Z"})
    kube.patch_status("b", {"lastUsed": "2026-06-01T00:00:00Z"})
    kube.patch_status("c", {"lastUsed": "2026-06-01T00:00:00Z"})
    kube.select("vip", "m", priority=500)
    evicted = eventually(lambda: s if (s := kube.status("a")).get("phase") == "Evicted" else None)
    assert evicted is not None, {t: kube.status(t) for t in ("a", "b", "c", "vip")}
    assert kube.status("b").get("phase") != "Evicted"
    assert eventually(lambda: any(e["reason"] == "Evicted" for e in kube.events("a")) or None)
    assert eventually(lambda: kube.status("vip").get("node") or None)


def test_full_gpu_with_cpu_footprint_falls_back_to_cpu(kube: Kube, operator: None) -> None:
    kube.apply_catalog(
        catalog(
            {
                "a": {"m": option(19.0)},
                "b": {"m": option(19.0)},
                "c": {"m": option(60.0)},
                "extra": {"m": option(19.0, cpuMemoryGb=1.0)},
            }
        )
    )
    fill_gpus(kube, priority=100)
    kube.select("extra", "m", device_policy="auto")
    status = eventually(
        lambda: s if (s := kube.status("extra")).get("pod") and s.get("device") == "cpu" else None
    )
    assert status is not None
    pod = eventually(lambda: kube.pod(status["pod"]))
    assert pod is not None and not holds_gpu(pod)
    assert eventually(
        lambda: any(e["reason"] == "CPUFallback" for e in kube.events("extra")) or None
    )


def test_model_switch_replaces_the_pod(kube: Kube, operator: None) -> None:
    kube.apply_catalog(catalog({"det": {"one": option(1.0), "two": option(2.0)}}))
    kube.select("det", "one")
    old = eventually(lambda: kube.status("det").get("pod"))
    assert old is not None
    kube.select("det", "two")
    new = eventually(lambda: p if (p := kube.status("det").get("pod")) not in (None, old) else None)
    assert new is not None
    gone = eventually(lambda: kube.pod(old) is None or None)
    assert gone, (kube.status("det"), [p["status"] for p in kube.model_pods()])
    assert eventually(lambda: [p["metadata"]["name"] for p in kube.model_pods()] == [new] or None)


def test_deleted_selection_garbage_collects_its_pod(kube: Kube, operator: None) -> None:
    kube.apply_catalog(catalog({"det": {"one": option(1.0)}}))
    kube.select("det", "one")
    pod = eventually(lambda: kube.status("det").get("pod"))
    assert pod is not None and eventually(lambda: kube.pod(pod))
    kube.delete_selection("det")
    assert eventually(lambda: kube.pod(pod) is None or None, timeout=60)


def test_invalid_selection_is_rejected_at_apply(kube: Kube) -> None:
    manifest = f"""
apiVersion: {c.API_VERSION}
kind: ModelSelection
metadata: {{name: bad, namespace: {kube.namespace}}}
spec: {{task: det, model: one, priority: 5000, devicePolicy: sometimes}}
"""
    result = kube.kubectl(["apply", "-f", "-"], stdin=manifest, check=False)
    assert result.returncode != 0
    assert "priority" in result.stderr and "5000" in result.stderr
    assert "devicePolicy" in result.stderr
    assert kube.selections() == []


def test_restarted_operator_creates_no_duplicate(kube: Kube, operator_factory: Any) -> None:
    kube.apply_catalog(catalog({t: {"m": option(1.0)} for t in ("a", "b")}))
    first = operator_factory()
    kube.select("a", "m")
    kube.select("b", "m")
    assert eventually(lambda: len(kube.model_pods()) == 2 or None)
    first.kill()  # SIGKILL: no cleanup, the Lease stays held until it expires
    first.wait()
    before = sorted(p["metadata"]["name"] for p in kube.model_pods())
    second = operator_factory()
    kube.select("a", "m", priority=200)  # a change the new operator must handle
    assert eventually(lambda: kube.status("a").get("observedGeneration") == 2 or None, timeout=60)
    after = sorted(p["metadata"]["name"] for p in kube.model_pods())
    assert after == before
    second.terminate()
    second.wait(timeout=30)


def test_catalog_change_replans(kube: Kube, operator: None) -> None:
    kube.apply_catalog(catalog({"det": {"one": option(1.0)}, "sum": {"two": option(1.0)}}))
    kube.select("det", "one")
    kube.select("sum", "two")
    pods = eventually(lambda: p if len(p := kube.model_pods()) == 2 else None)
    assert pods is not None
    # Resized beyond every GPU: its pod goes and the reason says why.
    kube.apply_catalog(catalog({"det": {"one": option(300.0)}, "sum": {"two": option(1.0)}}))
    status = eventually(
        lambda: s if (s := kube.status("det")).get("phase") == "Unschedulable" else None
    )
    assert status is not None, kube.status("det")
    assert "300.0 GB" in status["message"]
    # Removed: the selection fails with the contract's message, nothing else moves.
    kube.apply_catalog(catalog({"det": {"one": option(1.0)}, "sum": {}}))
    status = eventually(lambda: s if (s := kube.status("sum")).get("phase") == "Failed" else None)
    assert status is not None, kube.status("sum")
    assert status["message"] == "Model 'two' not found for task 'sum'"

    def tasks_with_pods() -> list[str]:
        return [p["metadata"]["labels"][c.LABEL_TASK] for p in kube.model_pods()]

    assert eventually(lambda: tasks_with_pods() == ["det"] or None), tasks_with_pods()


def selection_events(kube: Kube, kind: str, name: str) -> list[dict[str, Any]]:
    """The Events about one object, as `kubectl describe` reads them."""
    items = kube.core.list_namespaced_event(
        kube.namespace,
        field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
    ).items
    return [kube.api.sanitize_for_serialization(e) for e in items]


def test_an_external_api_selection_is_ready_for_kubectl_wait(kube: Kube, operator: None) -> None:
    kube.apply_catalog(
        catalog({"summary": {"hosted": {"modelId": "claude", "framework": "external_api"}}})
    )
    kube.select("summary", "hosted")
    result = kube.kubectl(
        [
            "wait",
            "--for=condition=Ready",
            "modelselection/summary",
            "-n",
            kube.namespace,
            "--timeout=60s",
        ],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    conditions = {c["type"]: c for c in kube.status("summary")["conditions"]}
    assert set(conditions) == {"Scheduled", "Ready"}
    assert conditions["Ready"]["reason"] == "ExternalAPI"
    assert (
        conditions["Ready"]["observedGeneration"]
        == kube.selection("summary")["metadata"]["generation"]
    )


def test_kubectl_describe_tells_the_story_of_a_selection(kube: Kube, operator: None) -> None:
    kube.apply_catalog(catalog({"det": {"one": option(1.0)}}))
    kube.select("det", "one")
    result = kube.kubectl(
        [
            "wait",
            "--for=condition=Ready",
            "modelselection/det",
            "-n",
            kube.namespace,
            "--timeout=120s",
        ],
        check=False,
    )
    assert result.returncode == 0, (result.stderr, kube.status("det"))

    def story() -> list[dict[str, Any]] | None:
        events = selection_events(kube, c.SELECTION_KIND, "det")
        return events if {"Placed", "Loaded"} <= {e["reason"] for e in events} else None

    events = eventually(story)
    assert events is not None, selection_events(kube, "ModelSelection", "det")
    for event in events:
        assert event["firstTimestamp"] and event["lastTimestamp"] and event["eventTime"]
        assert event["count"] >= 1 and event["source"]["component"] == "fovea-models-operator"
        assert len(event["message"]) <= 1024
    described = kube.kubectl(["describe", "modelselection", "det", "-n", kube.namespace])
    assert "Placed" in described.stdout and "Loaded" in described.stdout
    # Only the current model's measurement: unset until measured, never 0.0 placeholders.
    status = kube.status("det")
    assert status.get("measuredMemoryGb") is None or status["measuredMemoryGb"] > 0


def test_an_invalid_catalog_is_not_accepted_and_a_repeat_is_counted(
    kube: Kube, operator: None
) -> None:
    # The CRD schema accepts it; the domain parser refuses two tasks whose selections would
    # share one name.
    bad = catalog({"det": {"one": option(1.0)}, "DET": {"two": option(1.0)}})
    good = catalog({"det": {"one": option(1.0)}})
    kube.apply_catalog(bad)

    def accepted() -> str | None:
        conditions = _catalog_status(kube).get("conditions") or []
        return next((c["status"] for c in conditions if c["type"] == "Accepted"), None)

    assert eventually(lambda: accepted() == "False" or None), _catalog_status(kube)
    status = _catalog_status(kube)
    (problem,) = status["problems"]
    assert "'DET' and 'det'" in problem and "share the ModelSelection name 'det'" in problem
    assert status["options"] == {} and status["observedGeneration"] == 1
    listed = kube.kubectl(["get", "modelcatalog", "default", "-n", kube.namespace])
    assert "ACCEPTED" in listed.stdout and "False" in listed.stdout
    kube.apply_catalog(good)
    assert eventually(lambda: accepted() == "True" or None), _catalog_status(kube)
    assert _catalog_status(kube)["options"] == {"det": ["one"]}
    kube.apply_catalog(bad)  # the same problem again: the same Event, counted

    def repeated() -> list[dict[str, Any]] | None:
        events = selection_events(kube, c.CATALOG_KIND, "default")
        return [e for e in events if e["count"] == 2] or None

    counted = eventually(repeated)
    assert counted is not None, selection_events(kube, c.CATALOG_KIND, "default")
    assert counted[0]["reason"] == "Invalid" and counted[0]["type"] == "Warning"
    assert counted[0]["lastTimestamp"] >= counted[0]["firstTimestamp"]


def test_a_pod_settings_change_replaces_the_pod(kube: Kube, operator: None) -> None:
    kube.apply_catalog(catalog({"det": {"one": option(1.0)}}))
    kube.select("det", "one")
    old = eventually(lambda: kube.status("det").get("pod"))
    assert old is not None
    old_hash = eventually(
        lambda: (p := kube.pod(old)) and p["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH]
    )
    changed = catalog({"det": {"one": option(1.0)}})
    changed["inference"]["defaultBatchSize"] = 2  # FOVEA_BATCH_SIZE in the pod's env
    kube.apply_catalog(changed)
    new = eventually(lambda: p if (p := kube.status("det").get("pod")) not in (None, old) else None)
    assert new is not None
    pod = eventually(lambda: kube.pod(new))
    assert pod is not None
    assert pod["metadata"]["annotations"][c.ANNOTATION_SPEC_HASH] != old_hash
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env[c.ENV_BATCH_SIZE] == "2"
    assert eventually(lambda: [p["metadata"]["name"] for p in kube.model_pods()] == [new] or None)
    assert eventually(lambda: any(e["reason"] == "PodReplaced" for e in kube.events("det")) or None)


def _catalog_status(kube: Kube) -> dict[str, Any]:
    obj = kube.custom.get_namespaced_custom_object(
        c.GROUP, c.VERSION, kube.namespace, c.CATALOG_PLURAL, "default"
    )
    return dict(obj.get("status") or {})


def test_the_liveness_endpoint_reports_the_planner(
    kube: Kube, kubeconfig: str, tmp_path: Path
) -> None:
    import json
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "FOVEA_OPERATOR_LEASE_NAMESPACE": kube.namespace,
        "FOVEA_OPERATOR_RESYNC_SECONDS": "5",
    }
    with open(tmp_path / "operator.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fovea.cli",
                "operator",
                "-n",
                kube.namespace,
                "--liveness-port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def health() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    body: dict[str, Any] = json.loads(r.read())
                    return body if body.get("planner") == "planning" else None
            except OSError:
                return None

        assert eventually(health, timeout=60), (tmp_path / "operator.log").read_text()[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
