"""`fovea-models crds`: print, write or check the generated CRD manifests.

The CRDs are generated from the pydantic models (`fovea.domain.crds`); the
committed copies live in `manifests/crd/`. Without options the command prints
them; `--write` refreshes the committed files; `--check` exits with status 1
when they differ from what the code generates (run it in CI).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from fovea.domain.crds import rendered_files

DEFAULT_DIR = Path("manifests/crd")
EXIT_DIFFERENT = 1


def configure(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if the committed files differ")
    mode.add_argument("--write", action="store_true", help="write the files into --dir")
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help="where the CRD files live (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    files = rendered_files()
    if args.write:
        args.dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.dir / name).write_text(text, encoding="utf-8")
            print(f"wrote {args.dir / name}")
        return 0
    if args.check:
        return check(files, args.dir)
    sys.stdout.write("---\n".join(files.values()))
    return 0


def check(files: dict[str, str], directory: Path) -> int:
    """0 when every committed file equals the generated one; else print a diff and return 1."""
    stale = []
    for name, text in files.items():
        path = directory / name
        try:
            committed = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            committed = ""
        if committed != text:
            stale.append(name)
            diff = difflib.unified_diff(
                committed.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{path} (committed)",
                tofile=f"{path} (generated)",
            )
            sys.stderr.writelines(diff)
    if stale:
        print(
            f"{', '.join(stale)} in {directory} differ from the generated CRDs: "
            "run `fovea-models crds --write`",
            file=sys.stderr,
        )
        return EXIT_DIFFERENT
    print(f"{directory}: CRDs up to date")
    return 0
