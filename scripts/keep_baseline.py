"""Keep this release's rendered manifests as the next release's upgrade baseline.

    .venv/bin/python scripts/keep_baseline.py [REV]

writes tests/manifests/baseline/<version>/ (pyproject.toml's version): a chart whose
templates are `helm template` of charts/fovea-models for the local cluster
(ci/local-values.yaml) and whose crds/ are this release's CRDs, both as the commit REV
(default HEAD: the release's commit, never uncommitted files) has them. Run it once per
release, when the version is set (docs/installation.md#releases);
tests/manifests/test_release.py checks that the baseline of the current version is
what the chart renders, and tests/manifests/test_upgrade.py upgrades from it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
BASELINE = REPO / "tests" / "manifests" / "baseline" / VERSION
HEADER = (
    "# fovea-models {version} as `helm template` renders it for the local cluster\n"
    "# (charts/fovea-models/ci/local-values.yaml), kept by scripts/keep_baseline.py as\n"
    "# the next release's upgrade test starting point. Do not edit.\n"
)


def helm_binary() -> str:
    """The pinned helm (scripts/build-helm.sh builds it once into the cache)."""
    build = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-helm.sh")], capture_output=True, text=True
    )
    if build.returncode != 0:
        sys.exit(build.stderr)
    return build.stdout.strip().splitlines()[-1] + "/helm"


def rendered(helm: str, chart: Path) -> str:
    """The chart for the local cluster, CRDs apart, as the baseline's template."""
    values = chart / "ci" / "local-values.yaml"
    args = ["template", "fovea-models", str(chart), "-n", "fovea-system", "-f", str(values)]
    text = subprocess.run([helm, *args], capture_output=True, text=True, check=True).stdout
    if "{{" in text:
        sys.exit("the rendered objects hold '{{': they cannot be kept as a template")
    return HEADER.format(version=VERSION) + text


def files(helm: str, chart: Path) -> dict[Path, str]:
    """The baseline chart: Chart.yaml, this release's CRDs and its rendered objects."""
    meta = {
        "apiVersion": "v2",
        "name": "fovea-models",
        "description": f"fovea-models {VERSION} as rendered for the local cluster (a baseline)",
        "version": VERSION,
        "appVersion": VERSION,
    }
    out = {BASELINE / "Chart.yaml": yaml.safe_dump(meta, sort_keys=False)}
    out[BASELINE / "templates" / "release.yaml"] = rendered(helm, chart)
    for crd in sorted((chart / "crds").glob("*.yaml")):
        out[BASELINE / "crds" / crd.name] = crd.read_text()  # the link's target, a copy
    return out


def main() -> int:
    rev = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    helm = helm_binary()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", rev, "charts", "manifests"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        baseline = files(helm, Path(tmp) / "charts" / "fovea-models")
    shutil.rmtree(BASELINE, ignore_errors=True)
    for path, text in baseline.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(BASELINE.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
