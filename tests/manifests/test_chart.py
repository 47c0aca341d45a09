"""The Helm chart installs what `kubectl apply -k` installs (issue 27).

`helm lint`, then `helm template` of the chart with a values file beside
`kubectl kustomize` of the overlay it stands for, compared object by object
(kind, namespace, name, then the whole object). The differences by design: Helm
keeps the catalog and its selections on uninstall (the annotation
helm.sh/resource-policy: keep), which kustomize has no use for, and the release's
namespace is rendered only with createNamespace=true (values.yaml says why).
"""

from __future__ import annotations

import difflib
from typing import Any

import pytest
import yaml

from helm_testing import BASELINES, CHART, LOCAL_VALUES, helm, objects, template
from kustomize_testing import MANIFESTS, render

# No cluster, but the pinned kubectl (a control-plane binary) and helm: the integration layer.
pytestmark = pytest.mark.integration

KEEP = "helm.sh/resource-policy"
# The release's namespace is Helm's to need before the install, not the chart's to own
# (values.yaml); createNamespace=true renders it as the kustomize tree does.
NAMESPACE = ["--set", "createNamespace=true"]
# (the values, the kustomizations whose objects together are the same install)
CASES = {
    "defaults": (NAMESPACE, ["overlays/gpu"]),
    "local": (["-f", str(LOCAL_VALUES), *NAMESPACE], ["overlays/local"]),
    "hami": (["-f", str(CHART / "ci" / "hami-values.yaml"), *NAMESPACE], ["overlays/hami"]),
    "monitoring": (
        ["-f", str(CHART / "ci" / "monitoring-values.yaml"), *NAMESPACE],
        ["overlays/gpu", "monitoring"],
    ),
}

Key = tuple[str, str, str]


def by_key(docs: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for doc in docs:
        meta = doc["metadata"]
        key = (doc["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in out, f"{key} rendered twice"
        out[key] = doc
    return out


def without_keep(doc: dict[str, Any]) -> dict[str, Any]:
    """The object less Helm's keep annotation (and `annotations` if that was all)."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    annotations = doc["metadata"].get("annotations") or {}
    annotations.pop(KEEP, None)
    if not annotations:
        doc["metadata"].pop("annotations", None)
    return doc


CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


def as_applied(doc: dict[str, Any]) -> dict[str, Any]:
    """What the API server keeps of the two renderings' one incidental difference each:
    kustomize sets a namespace on the admission policies (it does not know they are
    cluster-scoped; the server drops it), and Helm installs crds/ as they are, without
    the base's part-of label (the chart's crds/ are links to manifests/crd)."""
    if doc["kind"] in CLUSTER_SCOPED:
        doc["metadata"].pop("namespace", None)
    if doc["kind"] == "CustomResourceDefinition":
        labels = doc["metadata"].get("labels") or {}
        labels.pop("app.kubernetes.io/part-of", None)
        if not labels:
            doc["metadata"].pop("labels", None)
    return doc


def env_by_name(doc: dict[str, Any]) -> dict[str, Any]:
    """A Deployment's container env in name order. Kubernetes keys env by name; its order
    matters only to a value that refers to another ($(VAR)), and none does (checked). A
    kustomize patch of one variable moves it first, the chart leaves it in place."""
    if doc["kind"] == "Deployment":
        for container in doc["spec"]["template"]["spec"]["containers"]:
            env = container.get("env") or []
            assert not [e for e in env if "$(" in str(e.get("value", ""))], env
            container["env"] = sorted(env, key=lambda e: e["name"])
    return doc


def report(chart: dict[Key, Any], kustomize: dict[Key, Any]) -> str:
    lines = [f"objects compared ({len(kustomize)}):"]
    lines += [f"  {kind} {ns}/{name}" for kind, ns, name in sorted(kustomize)]
    for key in sorted(set(chart) ^ set(kustomize)):
        lines.append(f"only in {'the chart' if key in chart else 'kustomize'}: {key}")
    for key in sorted(set(chart) & set(kustomize)):
        if chart[key] != kustomize[key]:
            diff = difflib.unified_diff(
                yaml.safe_dump(kustomize[key]).splitlines(),
                yaml.safe_dump(chart[key]).splitlines(),
                "kustomize",
                "helm template",
                lineterm="",
            )
            lines += [f"differs: {key}", *diff]
    return "\n".join(lines)


def test_helm_lint_passes_with_every_values_file() -> None:
    for values in [None, *sorted((CHART / "ci").glob("*.yaml"))]:
        args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
        out = helm(args).stdout
        assert "0 chart(s) failed" in out, out


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_chart_renders_the_objects_of_its_overlay(case: str) -> None:
    values, kustomizations = CASES[case]
    chart = by_key([as_applied(env_by_name(without_keep(d))) for d in objects(template(*values))])
    kustomize = by_key(
        [as_applied(env_by_name(d)) for path in kustomizations for d in render(MANIFESTS / path)]
    )
    assert chart == kustomize, report(chart, kustomize)
    # The catalog and its selections survive an uninstall; nothing else is kept.
    kept = sorted(
        d["kind"]
        for d in objects(template(*values))
        if KEEP in d["metadata"].get("annotations", {})
    )
    catalog = sorted(k[0] for k in kustomize if k[0] in ("ModelCatalog", "ModelSelection"))
    assert kept == catalog


def test_values_change_what_they_name() -> None:
    docs = by_key(
        objects(
            template(
                "--set",
                "images.registry=registry.example/mirror,images.pullPolicy=Always",
                "--set",
                "allowedImages={registry.example/team/},tenants.defaultGpuMemoryQuota=40Gi",
                "--set",
                "api.replicas=3,operator.replicas=1,catalog.install=none,sharingMode=mig",
            )
        )
    )
    operator = docs[("Deployment", "fovea-system", "fovea-models-operator")]
    container = operator["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "registry.example/mirror/control-plane:0.1.0"
    assert container["imagePullPolicy"] == "Always"
    assert env["FOVEA_OPERATOR_MODEL_POD_IMAGE"] == "registry.example/mirror/model-pod:0.1.0-cuda"
    assert env["FOVEA_OPERATOR_ALLOWED_IMAGES"] == '["registry.example/team/"]'
    assert env["FOVEA_OPERATOR_SHARING_MODE"] == "mig"
    assert docs[("Deployment", "fovea-system", "fovea-models-api")]["spec"]["replicas"] == 3
    assert operator["spec"]["replicas"] == 1
    tenants = docs[("ConfigMap", "fovea-system", "fovea-models-tenants")]
    assert tenants["data"] == {"FOVEA_OPERATOR_DEFAULT_GPU_MEMORY_QUOTA": "40Gi"}
    assert not [k for k in docs if k[0] in ("ModelCatalog", "ModelSelection", "Namespace")]


def test_a_bad_catalog_value_is_refused_with_its_choices() -> None:
    result = helm(
        ["template", "fovea-models", str(CHART), "--set", "catalog.install=mine"], check=False
    )
    assert result.returncode != 0
    assert 'catalog.install is "mine": one of default, demo or none' in result.stderr


# Fields the API server refuses to change: an upgrade that changed one would fail halfway
# (or need an object deleted by hand, as the model pods' binding once did).
IMMUTABLE = {
    "Deployment": lambda d: d["spec"]["selector"],
    "RoleBinding": lambda d: d["roleRef"],
    "ClusterRoleBinding": lambda d: d["roleRef"],
    "Secret": lambda d: d.get("type"),
    "PodDisruptionBudget": lambda d: d["spec"]["selector"],
}


@pytest.mark.parametrize("baseline", sorted(p.name for p in BASELINES.iterdir()))
def test_an_upgrade_from_a_kept_release_changes_no_immutable_field(baseline: str) -> None:
    """A binding whose roleRef changes takes a new name (Helm then deletes the old one)."""
    kept = objects((BASELINES / baseline / "templates" / "release.yaml").read_text())
    old = {k: d for k, d in by_key(kept).items() if k[0] in IMMUTABLE}
    new = by_key(objects(template("-f", str(LOCAL_VALUES))))
    compared = [k for k in old if k in new]
    assert compared, "nothing of the baseline is in the chart any more"
    changed = [k for k in compared if IMMUTABLE[k[0]](old[k]) != IMMUTABLE[k[0]](new[k])]
    assert not changed, f"immutable fields changed since {baseline}: {changed} (of {compared})"
