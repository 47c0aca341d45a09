"""The `fovea-models` command: one entry point, one module (or object) per subcommand.

A subcommand is a module, or `module:object`, exposing `configure(parser)` and
`run(args) -> int`; only the chosen one is imported, and each imports its heavy
dependencies (torch, kopf, uvicorn) only inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

DESCRIPTION = """\
Manage the ML models of the annotation platform on Kubernetes: see which
models each task can use and which are loaded, select and load them, check
that they fit in GPU memory, read their logs.

The commands for people talk to the REST API (the frontend's): --api URL or
$FOVEA_API (default http://localhost:3001), --token or $FOVEA_API_TOKEN.
Options go after the command (fovea-models ps --api URL); --api and --token
may also come before it (fovea-models --api URL ps)."""

# The connection options of every people's command: accepted before the command too.
LEADING_OPTIONS = ("--api", "--token")

# name -> (target, one-line help); people's commands first, then the machinery.
_USER = "fovea.usercli.commands"
USER_COMMANDS: dict[str, tuple[str, str]] = {
    "list": (f"{_USER}:LIST", "the catalog: each task's options, the selected marked"),
    "ps": (f"{_USER}:PS", "loaded models: device, memory, load time; GPU use"),
    "select": (f"{_USER}:SELECT", "select a task's model (--wait: until Ready)"),
    "load": (f"{_USER}:LOAD", "load a task's selected model now (--wait)"),
    "unload": (f"{_USER}:UNLOAD", "free a task's model memory; the selection stays"),
    "validate": (f"{_USER}:VALIDATE", "the GPU memory budget [TASK=MODEL what-ifs]"),
    "logs": (f"{_USER}:LOGS", "the log of a task's model pod (-f to follow)"),
    "describe": (f"{_USER}:DESCRIBE", "a task's selection: status, conditions, Events"),
    "predict": (f"{_USER}:PREDICT", "send a request to a task's model (JSON or --image)"),
}
MACHINERY: dict[str, tuple[str, str]] = {
    "up": ("fovea.stack", "run the local cluster, the operator and the API on :3001"),
    "cluster": ("fovea.localcluster.cli", "the local Kubernetes control plane"),
    "catalog": ("fovea.operator.catalog_cli", "import a models.yaml as a ModelCatalog"),
    "crds": ("fovea.operator.crds_cli", "print or check the generated CRD manifests"),
    "operator": ("fovea.operator.main", "run the kopf operator"),
    "api": ("fovea.api.main", "serve the /api/models REST API"),
    "model-pod": ("fovea.model_pod.main", "the process inside a model-server pod"),
    "fetch-weights": ("fovea.model_pod.weights.cli", "fetch model weights into the cache"),
    "version": ("fovea.version", "print the release of fovea-models"),
}
COMMANDS = {**USER_COMMANDS, **MACHINERY}


def _listing(title: str, commands: dict[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}} {help_text}" for name, (_, help_text) in commands.items()]
    return f"{title}:\n" + "\n".join(lines)


EPILOG = "\n\n".join(
    [
        _listing("Models", USER_COMMANDS),
        _listing("Running fovea-models (the machinery)", MACHINERY),
        "`fovea-models COMMAND --help` tells more; exit codes: docs/cli.md.",
    ]
)


def _load(target: str) -> object:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose "invalid choice" says where options go when one came first."""

    leading_option: str | None = None

    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message and self.leading_option is not None:
            message += (
                f" (an option came before the command: {self.leading_option}; options go "
                "after the command, e.g. `fovea-models ps --output json`; only --api and "
                "--token may come first)"
            )
        super().error(message)


def hoist(argv: list[str]) -> list[str]:
    """`--api URL ps` as `ps --api URL`: leading connection options move after the command."""
    rest, moved = list(argv), []
    while rest and rest[0].split("=", 1)[0] in LEADING_OPTIONS:
        take = 1 if "=" in rest[0] else 2
        if len(rest) <= take:
            break
        moved += rest[:take]
        rest = rest[take:]
    if moved and rest and rest[0] in USER_COMMANDS:
        return [rest[0], *moved, *rest[1:]]
    return argv


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (the others may be heavy)."""
    parser = _Parser(
        prog="fovea-models",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of the commands below"
    )
    for name, (target, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, description=help_text)
        if name == command:
            chosen = _load(target)
            chosen.configure(cmd)  # type: ignore[attr-defined]
            cmd.set_defaults(_run=chosen.run)  # type: ignore[attr-defined]
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = hoist(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        parser.leading_option = argv[0]  # type: ignore[attr-defined]
    args = parser.parse_args(argv)
    sys.exit(args._run(args))


if __name__ == "__main__":
    main()
