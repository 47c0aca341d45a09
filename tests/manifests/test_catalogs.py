"""The ModelCatalogs kept in git agree with the models.yaml they are generated from."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from kustomize_testing import MANIFESTS, REPO

SCRIPT = REPO / "scripts" / "generate_catalogs.py"


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_every_generated_catalog_agrees_with_its_source() -> None:
    result = generate("--check")
    assert result.returncode == 0, result.stderr
    assert "4 generated catalogs agree" in result.stdout


def test_a_stale_catalog_is_found_and_regenerated(tmp_path: Path) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    source = tmp_path / "manifests" / "gitops" / "example-site" / "models.yaml"
    source.write_text(source.read_text().replace("selected: yolov8s", "selected: yolov8n"))

    stale = generate("--check", "--root", str(tmp_path))
    assert stale.returncode == 1
    assert "-  model: yolov8s" in stale.stderr and "+  model: yolov8n" in stale.stderr
    assert "stale: manifests/gitops/example-site/catalog.yaml" in stale.stderr

    assert generate("--root", str(tmp_path)).returncode == 0
    assert generate("--check", "--root", str(tmp_path)).returncode == 0


def test_a_broken_models_yaml_changes_no_file(tmp_path: Path) -> None:
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    catalog = tmp_path / "manifests" / "catalog"
    # A stale output listed before the broken source: not written either.
    (catalog / "default.yaml").write_text("stale\n")
    site = tmp_path / "manifests" / "gitops" / "example-site"
    before = (site / "catalog.yaml").read_text()
    (site / "models.yaml").write_text("tasks:\n  t:\n    options:\n      m: {model_id: x}\n")

    result = generate("--root", str(tmp_path))
    assert result.returncode == 2
    assert "models.yaml" in result.stderr and "vram" in result.stderr
    assert (site / "catalog.yaml").read_text() == before
    assert (catalog / "default.yaml").read_text() == "stale\n"
