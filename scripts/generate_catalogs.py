#!/usr/bin/env python3
"""Regenerate (or, with --check, verify) every ModelCatalog manifest kept in git.

Kustomize cannot run the catalog importer (that would take exec plugins and
flags that `kubectl apply -k`, Argo CD and Flux do not enable by default), so
each `models.yaml` in the repository has its generated manifest committed next
to a kustomization, and this script keeps the two in step:

    .venv/bin/python scripts/generate_catalogs.py            # rewrite the generated files
    .venv/bin/python scripts/generate_catalogs.py --check    # exit 1, with a diff, if stale

`--root DIR` works on another checkout (the tests use a copy).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path

from fovea.domain.catalog import CatalogError, parse_models_yaml, render_manifests
from fovea.operator.catalog_cli import header_for, write_atomically

REPO = Path(__file__).resolve().parent.parent
EXIT_STALE = 1
EXIT_INVALID = 2


@dataclass(frozen=True)
class Generated:
    source: str  # a models.yaml, relative to the repository root
    output: str  # its manifest
    selections: bool  # one ModelSelection per task that the source selects

    def header(self) -> str:
        name = Path(self.source).name
        if self.selections:
            return header_for(name)
        return (
            f"Generated from {name} by scripts/generate_catalogs.py: edit that file,\n"
            "not this one. Only the ModelCatalog, without selections: nothing loads until\n"
            "something is selected."
        )

    def render(self, root: Path) -> str:
        text = (root / self.source).read_text(encoding="utf-8")
        imported = parse_models_yaml(text, Path(self.source).name)
        return render_manifests(imported, selections=self.selections, header=self.header())


GENERATED = (
    Generated("manifests/catalog/models.yaml", "manifests/catalog/default.yaml", True),
    Generated("manifests/catalog/demo-models.yaml", "manifests/catalog/demo.yaml", True),
    Generated("manifests/catalog/demo-models.yaml", "manifests/demo-catalog/catalog.yaml", False),
    Generated(
        "manifests/gitops/example-site/models.yaml",
        "manifests/gitops/example-site/catalog.yaml",
        True,
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root")
    args = parser.parse_args(argv)
    # Render everything before writing anything: one bad source changes no file.
    expected: dict[str, str] = {}
    for item in GENERATED:
        try:
            expected[item.output] = item.render(args.root)
        except (OSError, CatalogError) as exc:
            print(f"{item.source}: {exc}", file=sys.stderr)
            return EXIT_INVALID
    stale = []
    for item in GENERATED:
        path = args.root / item.output
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == expected[item.output]:
            continue
        if not args.check:
            write_atomically(path, expected[item.output])
            print(f"wrote {item.output}")
            continue
        stale.append(item.output)
        sys.stderr.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                expected[item.output].splitlines(keepends=True),
                fromfile=f"{item.output} (committed)",
                tofile=f"{item.output} (from {item.source})",
            )
        )
    if stale:
        print(f"stale: {', '.join(stale)}; run scripts/generate_catalogs.py", file=sys.stderr)
        return EXIT_STALE
    if args.check:
        print(f"{len(GENERATED)} generated catalogs agree with their models.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
