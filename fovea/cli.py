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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (the others may be heavy)."""
    parser = argparse.ArgumentParser(prog="fovea-models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.configure(cmd)
            cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    sys.exit(args._run(args))


if __name__ == "__main__":
    main()
