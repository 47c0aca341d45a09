"""One version everywhere (issue 27): pyproject.toml's, `fovea-models version`, the chart's
version and appVersion, the images' tags, what the operator reports on /metrics, the
CHANGELOG's latest entry and the kept upgrade baseline. Files only: the unit layer."""

from __future__ import annotations

import tomllib

import prometheus_client
import pytest
import yaml

from fovea import cli
from fovea.version import VERSION
from helm_testing import BASELINES, CHART
from kustomize_testing import MANIFESTS, REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_the_installed_version_is_pyprojects() -> None:
    # A stale install (pip install -e . not rerun after a bump) says so here.
    assert VERSION == PYPROJECT


def test_the_version_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"{VERSION}\n"


def test_the_chart_and_the_images_carry_it() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)
    images = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())["images"]
    tags = {i["name"].rsplit("/", 1)[1]: i["newTag"] for i in images}
    assert tags == {"control-plane": VERSION, "model-pod": f"{VERSION}-cuda"}
    values = yaml.safe_load((CHART / "values.yaml").read_text())["images"]
    assert values["controlPlane"]["tag"] == values["modelPod"]["tag"] == ""  # appVersion


def test_the_operator_reports_it_on_metrics() -> None:
    import fovea.operator.handlers  # noqa: F401  (registers the build info)

    exposed = prometheus_client.generate_latest().decode()
    assert f'fovea_operator_build_info{{version="{VERSION}"}} 1.0' in exposed


def test_the_changelog_starts_with_this_release() -> None:
    """Its first release heading is this version's; only "Unreleased" (what main has since,
    renamed to the next version when it is cut) may stand above it."""
    text = (REPO / "CHANGELOG.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    if headings and headings[0] == "## Unreleased":
        headings = headings[1:]
    assert headings and headings[0].startswith(f"## {VERSION} ")


def test_this_release_is_kept_as_the_next_upgrade_baseline() -> None:
    baseline = BASELINES / VERSION
    chart = yaml.safe_load((baseline / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION)
    rendered = [
        d for d in yaml.safe_load_all((baseline / "templates" / "release.yaml").read_text()) if d
    ]
    kinds = {d["kind"] for d in rendered}
    assert {"Deployment", "ClusterRole", "ModelCatalog", "ValidatingAdmissionPolicy"} <= kinds
    assert sorted(p.name for p in (baseline / "crds").iterdir()) == sorted(
        p.name for p in (CHART / "crds").iterdir()
    )
