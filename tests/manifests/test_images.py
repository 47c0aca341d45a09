"""The Dockerfiles and the image build script, as far as a machine without Docker can check.

No image is built here (no container engine): the Dockerfiles are read for
what they promise (pinned bases, a non-root user, a health check, no torch in
the control plane), the control plane is shown to start without torch, and
the build script is run to show it says plainly when it cannot build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from kustomize_testing import MANIFESTS, REPO

IMAGES = REPO / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
BUILD = REPO / "scripts" / "build-images.sh"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# Imports the control plane must never need (they live in the [model] extra).
MODEL_ONLY = ("torch", "torchvision", "transformers", "ultralytics", "safetensors", "pynvml")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_there_is_a_control_plane_and_two_model_pod_images() -> None:
    assert [p.name for p in DOCKERFILES] == [
        "control-plane.Dockerfile",
        "model-pod-cpu.Dockerfile",
        "model-pod-cuda.Dockerfile",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.stem)
def test_bases_are_pinned_to_an_exact_version(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    bases = [a.split()[0] for kind, a in steps if kind == "FROM"]
    assert bases
    for base in bases:
        image = args.get(base.strip("${}"), base)
        tag = image.partition(":")[2]
        assert tag and tag != "latest", f"{dockerfile.name}: base {image} is not pinned"
        # An exact release: at least major.minor.patch (python:3.11.13-..., cuda:13.0.1-...).
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{dockerfile.name}: {image} is not exact"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.stem)
def test_the_final_stage_runs_as_a_non_root_user_with_a_health_check(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    last_from = max(i for i, (kind, _) in enumerate(steps) if kind == "FROM")
    final = steps[last_from:]
    users = [a for kind, a in final if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0].isdigit(), "a numeric USER lets runAsNonRoot verify it"
    health = [a for kind, a in final if kind == "HEALTHCHECK"]
    assert health and "/healthz" in health[0] and "PORT" in health[0]
    assert ("ENTRYPOINT", '["fovea-models"]') in final


def test_the_control_plane_image_installs_no_model_extra() -> None:
    steps = instructions(IMAGES / "control-plane.Dockerfile")
    installs = [a for kind, a in steps if kind == "RUN" and "pip install" in a]
    assert installs and not any("[model]" in a or "torch" in a.split("&&")[0] for a in installs)


@pytest.mark.parametrize(
    ("name", "index"), [("model-pod-cpu", "whl/cpu"), ("model-pod-cuda", "whl/cu130")]
)
def test_model_pod_images_take_torch_from_the_matching_index(name: str, index: str) -> None:
    steps = instructions(IMAGES / f"{name}.Dockerfile")
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    assert args["TORCH_INDEX"].endswith(index)
    runs = [a for kind, a in steps if kind == "RUN"]
    torch_first = next(i for i, a in enumerate(runs) if "TORCH_INDEX" in a)
    extra = next(i for i, a in enumerate(runs) if '".[model]"' in a)
    assert torch_first < extra, "torch must come from its index before .[model] resolves it"


def test_the_control_plane_starts_without_any_model_library() -> None:
    """What the control-plane image holds is enough: torch & co. are unimportable here."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {MODEL_ONLY!r}:\n"
        "            raise ImportError(f'{name} is not in the control-plane image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import fovea.operator.handlers, fovea.api.app\n"
        "from fovea.cli import main\n"
        "for command in ('operator', 'api'):\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (command, exc.code)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_the_build_script_builds_the_tags_the_manifests_pin() -> None:
    script = BUILD.read_text()
    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    pinned = {f"{i['name']}:{i['newTag']}" for i in base["images"]}
    built = {
        tag.replace("$REGISTRY", "ghcr.io/fovea-models").replace("$VERSION", VERSION)
        for tag in re.findall(r'\]="(\$REGISTRY/[^"]+)"', script)
    }
    assert pinned <= built
    assert f"ghcr.io/fovea-models/model-pod:{VERSION}-cpu" in built  # the kind overlay's


def run_build(env: dict[str, str], *images: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD), *images],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_build_script_says_so_when_there_is_no_docker(tmp_path: Path) -> None:
    result = run_build({"DOCKER": str(tmp_path / "no-such-docker")})
    assert result.returncode == 2
    assert "is not installed here: no images built" in result.stderr


def test_the_build_script_says_so_when_docker_has_no_engine(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = run_build({"DOCKER": str(fake)})
    assert result.returncode == 2
    assert "cannot reach a container engine here: no images built" in result.stderr
    assert "Cannot connect to the Docker daemon" in result.stderr


def test_the_build_script_refuses_an_unknown_image() -> None:
    result = run_build({}, "control-plane", "model-pod-gpu")
    assert result.returncode == 1
    assert "unknown image 'model-pod-gpu'" in result.stderr
