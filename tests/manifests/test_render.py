"""Every kustomization renders offline, and what it renders says what the docs say.

No cluster: `kubectl kustomize` only. The server-side checks are in
test_dry_run.py, RBAC answers in tests/security/test_rbac.py, the running system in
test_in_cluster.py.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from fovea.domain import constants as c
from fovea.domain.catalog import parse_models_yaml
from fovea.domain.resources import SelectionSpec, selection_name
from kustomize_testing import (
    INSTALL_NAMESPACE,
    MANIFESTS,
    OVERLAYS,
    REPO,
    container,
    env_of,
    find,
    rbac_rules,
    render,
)

# No cluster, but the pinned `kubectl` (a control-plane binary): the integration layer.
pytestmark = pytest.mark.integration

KUSTOMIZATIONS = sorted(
    str(p.parent.relative_to(MANIFESTS)) for p in MANIFESTS.rglob("kustomization.yaml")
)
# Components render only inside a kustomization that uses them (the overlays).
RENDERABLE = [
    path
    for path in KUSTOMIZATIONS
    if yaml.safe_load((MANIFESTS / path / "kustomization.yaml").read_text())["kind"] != "Component"
]
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@cache
def rendered(path: str) -> list[dict[str, Any]]:
    return render(MANIFESTS / path)


def overlay(name: str) -> list[dict[str, Any]]:
    return rendered(f"overlays/{name}")


def test_the_tree_has_what_the_docs_name() -> None:
    expected = {"crd", "rbac", "manager", "base", "catalog", "demo-catalog", "samples"}
    expected |= {f"overlays/{name}" for name in OVERLAYS}
    expected |= {"gitops/example-site"}
    assert expected <= set(RENDERABLE)
    assert {"components/gpu", "components/hami"} <= set(KUSTOMIZATIONS) - set(RENDERABLE)


@pytest.mark.parametrize("path", RENDERABLE)
def test_every_kustomization_renders(path: str) -> None:
    objects = rendered(path)
    assert objects, f"{path} renders nothing"
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name")


@pytest.mark.parametrize("path", RENDERABLE)
def test_no_rbac_rule_has_a_wildcard(path: str) -> None:
    for where, rule in rbac_rules(rendered(path)):
        for key in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
            # Also `pods/*`-style subresource wildcards.
            assert not any("*" in v for v in rule.get(key) or []), f"{path}: {where}: {rule}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_an_overlay_is_a_whole_system_in_one_namespace(name: str) -> None:
    objects = overlay(name)
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "Role"} <= kinds
    assert {"Deployment", "Service", "PodDisruptionBudget", c.CATALOG_KIND} <= kinds
    assert find(objects, "Namespace")["metadata"]["name"] == INSTALL_NAMESPACE
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            assert obj["metadata"].get("namespace") == INSTALL_NAMESPACE, where
        for subject in obj.get("subjects") or []:
            assert subject.get("namespace") == INSTALL_NAMESPACE, obj["metadata"]["name"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_operator_is_a_leader_and_a_hot_standby_with_liveness_on_its_port(name: str) -> None:
    operator = find(overlay(name), "Deployment", "fovea-models-operator")
    assert operator["spec"]["replicas"] == 2
    # One replica at a time in a rollout: one always holds or can take the Lease.
    assert operator["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    box = container(operator)
    # Local processes listen where the node agent says ($HOST, $PORT); containers on 8080.
    local = ["--liveness-host=$(HOST)"] if name == "local" else []
    assert box["command"] == ["fovea-models", "operator", "--liveness-port=$(PORT)", *local]
    env = env_of(operator)
    assert env["PORT"] == str(box["ports"][0]["containerPort"])
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert box["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    spec = operator["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "fovea-models-operator"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_api_serves_port_3001_behind_a_service_and_a_budget(name: str) -> None:
    objects = overlay(name)
    api = find(objects, "Deployment", "fovea-models-api")
    box = container(api)
    host = "$(HOST)" if name == "local" else "0.0.0.0"  # local: its pod's own address
    assert box["command"] == ["fovea-models", "api", f"--host={host}", "--port=$(PORT)"]
    assert env_of(api)["PORT"] == "3001"
    assert env_of(api)["FOVEA_API_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
    service = find(objects, "Service", "fovea-models-api")
    assert service["spec"]["ports"][0]["port"] == 3001
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    budget = find(objects, "PodDisruptionBudget", "fovea-models-api")
    assert budget["spec"]["selector"] == api["spec"]["selector"]
    assert budget["spec"]["minAvailable"] == 1
    assert api["spec"]["template"]["spec"]["serviceAccountName"] == "fovea-models-api"


@pytest.mark.parametrize("name", OVERLAYS)
def test_control_plane_containers_are_locked_down(name: str) -> None:
    for deployment in (o for o in overlay(name) if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        box = container(deployment)
        assert box["securityContext"]["allowPrivilegeEscalation"] is False
        assert box["securityContext"]["readOnlyRootFilesystem"] is True
        assert box["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert box["resources"]["requests"] and box["resources"]["limits"]["memory"]


def images(objects: list[dict[str, Any]]) -> dict[str, str]:
    """Image -> where, for every image reference an overlay makes (containers and env)."""
    found = {}
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        found[container(deployment)["image"]] = deployment["metadata"]["name"]
        for name, value in env_of(deployment).items():
            if name.endswith("_IMAGE"):
                found[value] = f"{deployment['metadata']['name']} env {name}"
    return found


def test_images_are_pinned_in_the_base_at_the_package_version() -> None:
    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    tags = {image["name"]: image["newTag"] for image in base["images"]}
    assert tags == {
        "ghcr.io/fovea-models/control-plane": VERSION,
        "ghcr.io/fovea-models/model-pod": f"{VERSION}-cuda",
    }
    assert set(images(rendered("base"))) == {
        f"ghcr.io/fovea-models/control-plane:{VERSION}",
        f"ghcr.io/fovea-models/model-pod:{VERSION}-cuda",
    }


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_image_an_overlay_uses_is_tagged(name: str) -> None:
    for image, where in images(overlay(name)).items():
        assert ":" in image.rsplit("/", 1)[-1], f"{where}: {image} is not pinned"
        assert not image.endswith(":latest"), where


def test_kind_runs_the_cpu_model_image_it_loaded_and_pulls_nothing() -> None:
    objects = overlay("kind")
    operator = find(objects, "Deployment", "fovea-models-operator")
    assert env_of(operator)["FOVEA_OPERATOR_MODEL_POD_IMAGE"].endswith(f":{VERSION}-cpu")
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        assert container(deployment)["imagePullPolicy"] == "Never"
    service = find(objects, "Service", "fovea-models-api")
    assert service["spec"]["type"] == "NodePort"
    config = yaml.safe_load((MANIFESTS / "overlays" / "kind" / "kind-config.yaml").read_text())
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert {"containerPort": service["spec"]["ports"][0]["nodePort"], "hostPort": 3001} in [
        {k: m[k] for k in ("containerPort", "hostPort")} for m in mappings
    ]


@pytest.mark.parametrize(
    ("name", "mode"),
    [("local", "timeSliced"), ("kind", "timeSliced"), ("gpu", "whole"), ("hami", "hami")],
)
def test_the_operator_and_the_catalog_agree_on_the_sharing_mode(name: str, mode: str) -> None:
    objects = overlay(name)
    operator = find(objects, "Deployment", "fovea-models-operator")
    assert env_of(operator)["FOVEA_OPERATOR_SHARING_MODE"] == mode
    catalog = find(objects, c.CATALOG_KIND, c.DEFAULT_CATALOG_NAME)
    # The CRD's default (timeSliced) applies where the catalog does not say.
    assert catalog["spec"].get("sharingMode", "timeSliced") == mode


@pytest.mark.parametrize("name", ["gpu", "hami"])
def test_gpu_overlays_keep_the_control_plane_off_gpu_nodes(name: str) -> None:
    for deployment in (o for o in overlay(name) if o["kind"] == "Deployment"):
        affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        term = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]
        assert term["matchExpressions"][0]["key"] == "nvidia.com/gpu.present"


@pytest.mark.parametrize(("name", "catalog"), [("local", "demo"), ("kind", "demo")])
def test_cpu_overlays_ship_the_demo_catalog_and_select_nothing(name: str, catalog: str) -> None:
    objects = overlay(name)
    demo = parse_models_yaml((MANIFESTS / "catalog" / "demo-models.yaml").read_text()).spec
    shipped = find(objects, c.CATALOG_KIND)["spec"]
    assert set(shipped["tasks"]) == set(demo.tasks)
    assert not [o for o in objects if o["kind"] == c.SELECTION_KIND]


@pytest.mark.parametrize("name", ["gpu", "hami"])
def test_gpu_overlays_ship_the_default_catalog_and_its_selections(name: str) -> None:
    default = parse_models_yaml((MANIFESTS / "catalog" / "models.yaml").read_text())
    objects = overlay(name)
    assert set(find(objects, c.CATALOG_KIND)["spec"]["tasks"]) == set(default.spec.tasks)
    selected = {o["spec"]["task"] for o in objects if o["kind"] == c.SELECTION_KIND}
    assert selected == {task for task, spec in default.selected.items() if spec}


def test_samples_select_a_real_option_for_every_task_of_the_default_catalog() -> None:
    catalog = parse_models_yaml((MANIFESTS / "catalog" / "models.yaml").read_text()).spec
    samples = rendered("samples")
    assert {s["spec"]["task"] for s in samples} == set(catalog.tasks)
    for sample in samples:
        assert sample["kind"] == c.SELECTION_KIND
        spec = SelectionSpec.model_validate(sample["spec"])
        assert sample["metadata"]["name"] == selection_name(spec.task)
        assert spec.model is not None and catalog.option(spec.task, spec.model) is not None


def test_the_shipped_model_pod_binding_is_the_one_the_operator_creates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kubernetes import client

    from fovea.operator.cluster import Cluster

    created: dict[str, Any] = {}
    cluster = Cluster(client.ApiClient(client.Configuration()), [], "fovea-model-pod")
    monkeypatch.setattr(
        cluster._core,
        "create_namespaced_service_account",
        lambda ns, body: created.update(account=body),
    )
    monkeypatch.setattr(
        cluster._rbac,
        "create_namespaced_role_binding",
        lambda ns, body: created.update(binding=body),
    )
    monkeypatch.setattr(
        cluster._rbac, "create_namespaced_role", lambda ns, body: created.update(role=body)
    )
    cluster._ensure_model_pod_identity(INSTALL_NAMESPACE)

    assert "role" not in created  # the operator makes no Role
    objects = rendered("rbac")
    binding = find(objects, "RoleBinding", "fovea-model-pod")
    assert binding["roleRef"] == created["binding"]["roleRef"]
    assert binding["roleRef"]["kind"] == "ClusterRole"
    find(objects, "ClusterRole", binding["roleRef"]["name"])
    assert [s["name"] for s in binding["subjects"]] == ["fovea-model-pod"]
    find(objects, "ServiceAccount", created["account"]["metadata"]["name"])
    # The operator may bind that ClusterRole, by name, and no other.
    operator = find(objects, "ClusterRole", "fovea-models-operator")
    binds = [r for r in operator["rules"] if "bind" in r["verbs"]]
    assert binds == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "resourceNames": [binding["roleRef"]["name"]],
            "verbs": ["bind"],
        }
    ]


def test_gitops_examples_point_at_kustomizations_that_render() -> None:
    gitops = MANIFESTS / "gitops"
    application = yaml.safe_load((gitops / "argocd-application.yaml").read_text())
    assert (REPO / application["spec"]["source"]["path"] / "kustomization.yaml").is_file()
    ignored = application["spec"]["ignoreDifferences"][0]
    assert ignored["kind"] == c.SELECTION_KIND
    # Every spec field the REST API writes (select, load, unload).
    assert set(ignored["jsonPointers"]) == {"/spec/model", "/spec/wanted", "/spec/loadPolicy"}
    flux = [d for d in yaml.safe_load_all((gitops / "flux-sync.yaml").read_text()) if d]
    sync = find(flux, "Kustomization")
    assert (REPO / sync["spec"]["path"] / "kustomization.yaml").is_file()
    site = rendered("gitops/example-site")
    for selection in (o for o in site if o["kind"] == c.SELECTION_KIND):
        annotations = selection["metadata"]["annotations"]
        assert annotations["kustomize.toolkit.fluxcd.io/ssa"] == "IfNotPresent"
    site_catalog = find(site, c.CATALOG_KIND)["spec"]
    source = Path(gitops / "example-site" / "models.yaml").read_text()
    assert set(site_catalog["tasks"]) == set(parse_models_yaml(source).spec.tasks)


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_install_namespace_enforces_pod_security_restricted(name: str) -> None:
    labels = find(overlay(name), "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for deployment in (o for o in overlay(name) if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("name", OVERLAYS)
def test_in_cluster_writes_require_the_token_the_overlay_makes(name: str) -> None:
    objects = overlay(name)
    ref = env_of(find(objects, "Deployment", "fovea-models-api"))["FOVEA_API_API_TOKEN"]
    assert ref["secretKeyRef"] == {"name": "fovea-models-api-token", "key": "token"}  # required
    secret = find(objects, "Secret", "fovea-models-api-token")
    assert secret["type"] == "kubernetes.io/service-account-token"
    account = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
    find(objects, "ServiceAccount", account)
    # The token's account holds no right: nothing binds it.
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert account not in [s["name"] for s in binding.get("subjects") or []]


@pytest.mark.parametrize("name", OVERLAYS)
def test_network_policies_admit_only_labelled_namespaces(name: str) -> None:
    objects = overlay(name)
    access = {"matchLabels": {"fovea.dev/api-access": "true"}}
    api = find(objects, "NetworkPolicy", "fovea-models-api")["spec"]
    api_pods = find(objects, "Deployment", "fovea-models-api")["spec"]["selector"]
    assert api["podSelector"] == api_pods and api["policyTypes"] == ["Ingress"]
    port = [{"port": 3001, "protocol": "TCP"}]
    # kind: its NodePort on the host's 127.0.0.1 comes from the node, not a namespace.
    opened = [{"ports": port}] if name == "kind" else []
    assert api["ingress"] == [{"from": [{"namespaceSelector": access}], "ports": port}, *opened]
    servers = find(objects, "NetworkPolicy", "fovea-models-model-servers")["spec"]
    assert servers["podSelector"] == {"matchLabels": {c.LABEL_COMPONENT: c.COMPONENT_MODEL_POD}}
    assert servers["ingress"] == [
        {"from": [{"podSelector": api_pods}, {"namespaceSelector": access}]}
    ]
    operator = find(objects, "NetworkPolicy", "fovea-models-operator")["spec"]
    assert operator["policyTypes"] == ["Ingress"] and not operator.get("ingress")
