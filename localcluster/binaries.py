"""Find the control-plane binaries, building them once per version with `gobuild/build.sh`.

The build script caches them outside the repository, keyed by the Kubernetes
version pinned in `gobuild/go.mod`; with the binaries present it builds
nothing and returns at once. `$FOVEA_K8S_BIN_DIR` points at prebuilt ones.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fovea.domain import constants as c
from fovea.localcluster.settings import get_settings, prepend_to_path

GOBUILD = Path(__file__).resolve().parent / "gobuild"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class BinariesUnavailable(RuntimeError):
    """The binaries are missing and could not be built; the message says which step failed."""


def pinned_version() -> str:
    """The Kubernetes release this project builds (`k8s.io/kubernetes` in gobuild/go.mod)."""
    for line in (GOBUILD / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "k8s.io/kubernetes":
            return parts[1]
    raise BinariesUnavailable(f"no k8s.io/kubernetes requirement in {GOBUILD / 'go.mod'}")


def _complete(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def ensure_binaries(verbose: bool = True) -> Path:
    """The directory holding all the binaries; builds them (minutes, once) if needed."""
    explicit = get_settings().k8s_bin_dir
    if explicit:
        directory = Path(explicit).expanduser()
        if not _complete(directory):
            raise BinariesUnavailable(
                f"${c.ENV_K8S_BIN_DIR}={directory} does not hold all of {', '.join(BINARIES)}"
            )
        return directory
    script = GOBUILD / "build.sh"
    # Progress goes to our stderr (the first build takes minutes); the last
    # line of stdout is the bin directory.
    result = subprocess.run(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=None if verbose else subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or "").strip() if not verbose else "see the messages above"
        raise BinariesUnavailable(f"building the control plane failed: {detail}")
    lines = result.stdout.strip().splitlines()
    directory = Path(lines[-1]) if lines else Path()
    if not lines or not _complete(directory):
        raise BinariesUnavailable(f"{script} did not produce {', '.join(BINARIES)}")
    return directory


def put_kubectl_on_path(directory: Path) -> None:
    """Make the pinned kubectl the first on this process's PATH (and its children's).

    Everything this project runs with `kubectl` (tests, `fovea-models up`) then
    uses the client of the same release as the server, whatever else is installed.
    """
    prepend_to_path(directory)
