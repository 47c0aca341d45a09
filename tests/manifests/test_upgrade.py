"""Install, upgrade and remove with Helm on the local cluster, selections loaded (issue 27).

The previous release (tests/manifests/baseline/<version>: the rendered chart that
release shipped) is installed with Helm into the test's namespace, a model is
loaded, and `helm upgrade` takes it to this chart with the next release's image
tags (the operator's and the API's pods change; the model pods' image setting too).
Requests go to the per-task inference route all along. Then:

- no model pod was replaced (same names and UIDs) and no selection changed;
- the new operator, holding the Lease and saying its version there, plans: a
  second selection made after the upgrade is Ready, the first still untouched;
- `helm uninstall` leaves the catalog and the selections (and so their pods);
- the namespace, deleted with its selections while no operator runs, goes away
  (no finalizer of ours on anything).

The local cluster only: the chart's local values run each pod as a process of
this checkout (on kind the same flow needs the kind images; not done here).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fovea.domain import constants as c
from fovea.domain.resources import selection_name
from fovea.version import LEASE_ANNOTATION, VERSION
from helm_testing import (
    BASELINES,
    CHART,
    LOCAL_VALUES,
    POST_RENDERER,
    helm,
    install_post_renderer,
    objects,
    post_render,
    template,
)
from kube_testing import eventually
from kustomize_testing import delete_cluster_rbac, kubectl

pytestmark = pytest.mark.integration

RELEASE = "fovea-models"
BASELINE = BASELINES / VERSION  # this release; the next one upgrades from it
NEXT_TAGS = "images.controlPlane.tag=next,images.modelPod.tag=next-cpu"
START_S = 180.0  # Deployments Ready: a cold start on a busy two-core machine
LOAD_S = 300  # a select's ?wait=: the model pod imports torch before it loads
TASK, MODEL = "object_tracking", "mlp-tracker"  # the demo's smallest
SECOND_TASK, SECOND_MODEL = "video_summarization", "claude"  # external: Ready without a pod
SAMPLE = {"inputs": [[0.5] * 64]}  # mlp-tiny's input


@dataclass
class Release:
    namespace: str
    kubeconfig: str
    home: Path

    def helm(self, *args: str) -> str:
        base = ["-n", self.namespace]
        if args[0] in ("install", "upgrade"):
            base += ["--post-renderer", POST_RENDERER]
        return helm([*args, *base], self.kubeconfig, home=self.home).stdout

    def get(self, *args: str) -> dict[str, Any]:
        out = kubectl(["get", "-n", self.namespace, "-o", "json", *args], self.kubeconfig)
        obj: dict[str, Any] = yaml.safe_load(out.stdout)
        return obj

    def pods(self, component: str) -> list[dict[str, Any]]:
        items = self.get("pods", "-l", f"{c.LABEL_COMPONENT}={component}")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, component: str) -> list[dict[str, Any]]:
        def ready(pod: dict[str, Any]) -> bool:
            conditions = pod.get("status", {}).get("conditions") or []
            return any(x["type"] == "Ready" and x["status"] == "True" for x in conditions)

        return [p for p in self.pods(component) if ready(p)]

    def api_urls(self) -> list[str]:
        """The Ready API pods' addresses (the local cluster: each pod a process on its $PORT)."""
        return [
            f"http://{p['status']['podIP']}:{p['metadata']['annotations'][c.ANNOTATION_LOCAL_PORT]}"
            for p in self.ready_pods("api")
        ]

    def api_url(self) -> str:
        urls = self.api_urls()
        assert urls, "no API pod is Ready"
        return urls[0]

    def token(self) -> str:
        import base64

        secret = self.get("secret", "fovea-models-api-token")
        return base64.b64decode(secret.get("data", {}).get("token", "")).decode()

    def deployments_ready(self, image_tag: str) -> bool:
        for name in ("fovea-models-operator", "fovea-models-api"):
            deployment = self.get("deployment", name)
            status = deployment.get("status") or {}
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            if not image.endswith(f":{image_tag}"):
                return False
            if status.get("observedGeneration") != deployment["metadata"]["generation"]:
                return False
            wanted = deployment["spec"]["replicas"]
            if status.get("updatedReplicas") != wanted or status.get("readyReplicas") != wanted:
                return False
            if status.get("unavailableReplicas") or status.get("replicas") != status.get(
                "updatedReplicas"
            ):
                return False
        return True

    def selection(self, task: str) -> dict[str, Any]:
        return self.get(f"{c.SELECTION_PLURAL}.{c.GROUP}", selection_name(task))


@pytest.fixture
def release(kubeconfig: str, namespace: str, crds: None, tmp_path: Path) -> Iterator[Release]:
    home = tmp_path / "helm"
    install_post_renderer(home, namespace)
    restricted = "pod-security.kubernetes.io/enforce=restricted"
    kubectl(["label", "--overwrite", "namespace", namespace, restricted], kubeconfig)
    installed = Release(namespace, kubeconfig, home)
    try:
        yield installed
    finally:
        helm(["uninstall", RELEASE, "-n", namespace, "--ignore-not-found"], kubeconfig, home=home)
        # Whatever either chart made cluster-wide (suffixed with the namespace) goes too.
        for chart, values in ((BASELINE, []), (CHART, ["-f", str(LOCAL_VALUES)])):
            rendered = post_render(namespace, home, template(*values, chart=chart))
            delete_cluster_rbac(objects(rendered), kubeconfig)


@dataclass
class Traffic:
    """Requests to the per-task inference route, one at a time, until stopped.

    Each goes to an API pod that is Ready then, as a Service would send it. The local
    cluster has no Service proxy and no preStop hook: an API pod that the rollout stops
    between that pick and the connection refuses it, and the request, never sent, goes
    to another Ready pod (what a proxy's connect-failure retry does); such retries are
    counted apart. A request that got an answer other than 200, or no answer at all,
    failed.
    """

    release: Release
    headers: dict[str, str]
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def send(self) -> httpx.Response:
        refused: list[str] = []
        for _ in range(5):
            urls = [u for u in self.release.api_urls() if u not in refused]
            if not urls:
                time.sleep(0.2)
                continue
            try:
                return httpx.post(
                    f"{urls[0]}/api/models/predict/{TASK}",
                    json=SAMPLE,
                    headers=self.headers,
                    timeout=30,
                )
            except httpx.ConnectError:
                refused.append(urls[0])
                self.answers["connect retries"] += 1
        raise AssertionError(f"no Ready API pod took the connection (refused: {refused})")

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.send()
                self.answers[str(answer.status_code)] += 1
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
            except (httpx.HTTPError, AssertionError) as exc:
                self.answers["failed"] += 1
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.1)


def test_upgrade_replaces_no_model_pod_and_uninstall_keeps_the_selections(
    release: Release,
) -> None:
    # The CRDs are the session's (the crds fixture; an upgrade never changes crds/).
    release.helm("install", RELEASE, str(BASELINE), "--skip-crds")
    assert eventually(lambda: release.deployments_ready(VERSION), timeout=START_S), kubectl(
        ["get", "pods", "-n", release.namespace], release.kubeconfig
    ).stdout
    auth = {"Authorization": f"Bearer {release.token()}"}
    with httpx.Client(base_url=release.api_url(), timeout=LOAD_S + 30) as http:
        assert eventually(lambda: http.get("/readyz").status_code == 200, timeout=60)
        params = {"task_type": TASK, "model_name": MODEL, "wait": LOAD_S}
        answer = http.post("/api/models/select", params=params, headers=auth)
        assert answer.status_code == 200, answer.text
    before_pods = {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in release.pods("model-server")
    }
    before = release.selection(TASK)
    assert len(before_pods) == 1 and before["status"]["pod"] in before_pods
    operators_before = {p["metadata"]["uid"] for p in release.pods("operator")}

    traffic = Traffic(release, auth)
    sender = threading.Thread(target=traffic.run, daemon=True)
    sender.start()
    assert eventually(lambda: traffic.answers["200"] > 0, timeout=60), traffic.failures[-5:]
    try:
        release.helm("upgrade", RELEASE, str(CHART), "-f", str(LOCAL_VALUES), "--set", NEXT_TAGS)
        ready = eventually(lambda: release.deployments_ready("next"), timeout=START_S)
        assert ready, kubectl(["get", "pods", "-n", release.namespace], release.kubeconfig).stdout
        operators = {p["metadata"]["name"]: p["metadata"]["uid"] for p in release.pods("operator")}
        assert not operators_before & set(operators.values()), "an old operator pod is left"

        # A new operator holds the Lease and says its version there.
        def lease() -> dict[str, Any]:
            return release.get("lease", "fovea-models-operator")

        assert eventually(lambda: lease()["spec"].get("holderIdentity") in operators, 90), (
            lease(),
            operators,
        )
        assert lease()["metadata"]["annotations"][LEASE_ANNOTATION] == VERSION

        # It plans: a selection made now is Ready through it (placement is global: that
        # pass saw the first selection too).
        with httpx.Client(base_url=release.api_url(), timeout=LOAD_S + 30) as http:
            params = {"task_type": SECOND_TASK, "model_name": SECOND_MODEL, "wait": 120}
            answer = http.post("/api/models/select", params=params, headers=auth)
            assert answer.status_code == 200, answer.text
    finally:
        traffic.stop.set()
        sender.join(60)

    after_pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in release.pods("model-server")}
    after = release.selection(TASK)
    assert after_pods == before_pods, "a model pod was replaced by the upgrade"
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert (after["status"]["phase"], after["status"]["pod"]) == ("Ready", before["status"]["pod"])
    print(f"upgrade: model pods replaced 0 of {len(before_pods)}; requests {dict(traffic.answers)}")
    assert traffic.answers["200"] > 0
    assert not traffic.failures, f"{len(traffic.failures)} failed requests: {traffic.failures[:10]}"

    # Uninstall: the operator and the API go, the catalog, the selections and their pods stay.
    release.helm("uninstall", RELEASE, "--wait")
    assert not release.get("deployments")["items"]
    kept = release.get(f"{c.SELECTION_PLURAL}.{c.GROUP}")["items"]
    assert sorted(s["spec"]["task"] for s in kept) == sorted([TASK, SECOND_TASK])
    catalogs = release.get(f"{c.CATALOG_PLURAL}.{c.GROUP}")["items"]
    assert [x["metadata"]["name"] for x in catalogs] == ["default"]
    assert sorted(p["metadata"]["name"] for p in release.pods("model-server")) == sorted(
        before_pods
    )
    for obj in [*kept, *catalogs, *release.pods("model-server")]:
        assert not obj["metadata"].get("finalizers"), obj["metadata"]

    # No operator runs: deleting the namespace still removes everything in it.
    kubectl(["delete", "namespace", release.namespace, "--wait=false"], release.kubeconfig)

    def gone() -> bool:
        result = kubectl(["get", "namespace", release.namespace], release.kubeconfig, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    assert eventually(gone, timeout=120), kubectl(
        ["get", "namespace", release.namespace, "-o", "yaml"], release.kubeconfig
    ).stdout
