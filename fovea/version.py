"""The release of fovea-models: one version string, pyproject.toml's.

It is the version `fovea-models version` prints, the tag of the images
(scripts/build-images.sh), the Helm chart's `version` and `appVersion`
(charts/fovea-models/Chart.yaml), and what the operator reports in its Lease
(annotation `fovea.dev/operator-version`) and on /metrics
(`fovea_operator_build_info{version=...}`). tests/manifests/test_release.py
checks that they all agree.

As a subcommand: `fovea-models version` prints it.
"""

from __future__ import annotations

import argparse
from importlib import metadata

DISTRIBUTION = "fovea-models"
# The Lease annotation where the operator holding it says which release it runs.
LEASE_ANNOTATION = "fovea.dev/operator-version"


def _installed_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a checkout on sys.path without `pip install`
        return "0+unknown"


VERSION = _installed_version()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "print the release of fovea-models (pyproject.toml's version)"


def run(args: argparse.Namespace) -> int:
    print(VERSION)
    return 0
