"""What the docs claim about the product, checked against the product (issue 28).

Pure: the docs' text against the app's OpenAPI, the generated CRD, the catalog
parser and the `up` command's defaults; no cluster. The documented command lines
themselves run against the local cluster in test_documented_commands.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from fovea.api.app import create_app
from fovea.api.settings import Settings
from fovea.domain import crds
from fovea.domain.resources import CatalogSpec

REPO = Path(__file__).resolve().parents[2]


def doc(name: str) -> str:
    return (REPO / name).read_text()


def _kubeconfig(tmp_path: Path) -> str:
    """A kubeconfig naming a cluster nobody needs to reach (the OpenAPI is built offline)."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return str(path)


def _route_name(path: str) -> str:
    """`/api/models/load/{task_type}` -> `load`; other paths as they are (`/v1/models`)."""
    prefix = "/api/models/"
    return path.removeprefix(prefix).split("/")[0] if path.startswith(prefix) else path


def test_the_token_guard_list_of_api_md_is_the_apps(tmp_path: Path) -> None:
    settings = Settings(kubeconfig=_kubeconfig(tmp_path), api_token=SecretStr("t"))
    schema = create_app(settings).openapi()
    guarded, open_ = set(), set()
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            (guarded if "401" in operation["responses"] else open_).add(_route_name(path))
    [row] = [line for line in doc("docs/api.md").splitlines() if "`FOVEA_API_API_TOKEN`" in line]
    needs, _, stays = row.partition("these stay open:")
    needs = needs.split("Bearer <token>`:")[1].split("(so the CLI")[0]
    documented_guarded = set(re.findall(r"`([^`]+)`", needs))
    documented_open = set(re.findall(r"`([^`]+)`", stays.split(". ")[0]))
    assert documented_guarded == guarded
    assert documented_open == open_ - guarded


def _columns_of(comment: str) -> list[str]:
    return [c.strip() for c in comment.split(",")]


def test_the_documented_printer_columns_are_the_crds() -> None:
    version = crds.selection_crd()["spec"]["versions"][0]
    shown = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert shown[-1] == "Age"
    for name in ("README.md", "docs/troubleshooting.md", "docs/installation.md"):
        comments = re.findall(r"get modelselections +# (.+)", doc(name))
        assert comments, name
        for comment in comments:
            assert _columns_of(comment) == shown[:-1], name
    catalog_md = " ".join(doc("docs/catalog.md").split())
    said = catalog_md.split("`kubectl get msel` shows ")[1].split("(`-o wide`")[0]
    said = re.sub(r"\([^)]*\)", "", said)  # the columns, without what the docs say of them
    assert re.findall(r"\b(" + "|".join(shown) + r")\b", said) == shown


def test_every_memory_column_says_its_unit() -> None:
    version = crds.selection_crd()["spec"]["versions"][0]
    memory = [c for c in version["additionalPrinterColumns"] if "emory" in c.get("description", "")]
    assert [c["name"] for c in memory] == ["Declared", "Measured"]
    # Strings the operator writes with the unit: kubectl prints a number column bare (7.2e-05).
    assert all(c["type"] == "string" and "GB = 1024^3 bytes" in c["description"] for c in memory)


def test_the_catalog_that_does_not_parse_in_the_docs_is_one_the_crd_accepts() -> None:
    """The docs' example must be possible: the CRD has no rule for it, the parser refuses it.

    (Their former example, defaultBatchSize above maxBatchSize, the CRD refuses at apply.)
    """
    for name in ("docs/api.md", "docs/troubleshooting.md"):
        assert "two tasks `obj_det` and `Obj-Det`" in " ".join(doc(name).split()), name
        assert "defaultBatchSize` above" not in doc(name), name
    tasks = {t: {"options": {"m": {"model_id": "m", "vram_gb": 1}}} for t in ("obj_det", "Obj-Det")}
    with pytest.raises(ValidationError, match="would share the ModelSelection name 'obj-det'"):
        CatalogSpec.model_validate({"tasks": tasks})
    rules = str(crds.catalog_crd())
    assert "defaultBatchSize <= self.maxBatchSize" in rules  # that one the CRD checks itself


def test_troubleshooting_starts_with_the_namespace_make_run_uses() -> None:
    from fovea import stack

    parser = __import__("argparse").ArgumentParser()
    stack.configure(parser)
    namespace = parser.parse_args([]).namespace
    assert namespace == "default"
    text = doc("docs/troubleshooting.md")
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert "On `make run` (`fovea-models up`) everything is in the namespace `default`" in text
    assert "fovea-system" not in first_block and "kubectl get modelselections" in first_block


def test_the_cli_help_and_docs_say_where_options_go() -> None:
    from fovea.cli import DESCRIPTION

    assert "Options go after the command" in DESCRIPTION
    assert "`--api` and `--token` may also come before it" in " ".join(doc("docs/cli.md").split())
