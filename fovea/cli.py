"""The `fovea-models` command: one entry point, one module per subcommand.

Each subcommand module exposes `configure(parser)` and `run(args) -> int` and
imports its heavy dependencies (torch, kopf, uvicorn) only inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("fovea.stack", "run the local cluster, the operator and the API on :3001"),
    "cluster": ("fovea.localcluster.cli", "the local Kubernetes control plane"),
    "catalog": ("fovea.operator.catalog_cli", "import a models.yaml as a ModelCatalog"),
    "crds": ("fovea.operator.crds_cli", "print or check the generated CRD manifests"),
    "operator": ("fovea.operator.main", "run the kopf operator"),
    "api": ("fovea.api.main", "serve the /api/models REST API"),
    "model-pod": ("fovea.model_pod.main", "the process inside a model-server pod"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fovea-models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args._run(args))
