"""The pure reconcile() of another revision against the working tree's, in one run.

Times one planning decision (no API server) on a synthetic World like
bench/reconcile.py's: 1,000 selections in 50 namespaces on 100 GPU nodes
(80 GiB each), first as new selections, then in the steady state (every pod
running, every status written: the resync case). The other revision's
operator/reconcile.py runs against this tree's domain/ and podspec, so the
figures compare the decision code alone. Medians of 15 runs each, interleaved.

Usage: .venv/bin/python -P bench/reconcile_compare.py [--rev a87ba45]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

from builders import cpu_node, gpu_node, running  # noqa: E402
from fovea.domain.resources import SelectionSpec  # noqa: E402
from fovea.operator import reconcile as new  # noqa: E402
from fovea.operator.podspec import PodSettings  # noqa: E402

NAMESPACES, PER_NAMESPACE = 50, 20
CATALOG = {
    "tasks": {
        "task": {
            "options": {
                f"m{i}": {"modelId": f"b{i}", "framework": "pytorch", "vramGb": 4.0}
                for i in range(2)
            }
        }
    }
}


def load_old(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:operator/reconcile.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_reconcile.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_reconcile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_reconcile"] = module
    spec.loader.exec_module(module)
    return module


def world(mod: ModuleType, catalog: Callable[[str], Any]) -> Any:
    selections = [
        mod.Selection(
            f"ns-{n:02d}",
            f"sel-{j:03d}",
            f"uid-{n}-{j}",
            1,
            SelectionSpec(task="task", model="m0"),
            {},
        )
        for n in range(NAMESPACES)
        for j in range(PER_NAMESPACE)
    ]
    nodes = [gpu_node(f"gpu-{i:03d}", 80) for i in range(100)] + [cpu_node()]
    catalogs = {(f"ns-{n:02d}", "default"): catalog(f"ns-{n:02d}") for n in range(NAMESPACES)}
    # Revisions before issue 12 also took the API-key Secrets that exist.
    older = {"secrets": frozenset()} if "secrets" in mod.World.__dataclass_fields__ else {}
    return mod.World(catalogs=catalogs, selections=selections, nodes=nodes, pods=[], **older)


def settled(w: Any, actions: Any) -> Any:
    """The world once the first pass's pods run and its statuses are written."""
    selections = [
        dataclasses.replace(s, status=actions.status.get(s.key, {})) for s in w.selections
    ]
    return dataclasses.replace(w, pods=[running(p) for p in actions.create], selections=selections)


def median_ms(fn: Callable[[], object], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rev", default="a87ba45", help="the revision to compare with")
    args = parser.parse_args()
    old = load_old(args.rev)
    settings = PodSettings()
    old_first = world(old, lambda ns: CATALOG)
    new_first = world(new, lambda ns: new.Catalog(ns, "default", CATALOG))
    old_steady = settled(old_first, old.reconcile(old_first, settings))
    new_steady = settled(new_first, new.reconcile(new_first, settings).actions())

    def old_run(w: Any) -> Callable[[], object]:
        return lambda: old.reconcile(w, settings)

    def new_run(w: Any) -> Callable[[], object]:
        return lambda: new.reconcile(w, settings).actions()

    for label, ow, nw in (
        ("first pass, 1,000 new selections", old_first, new_first),
        ("steady pass, 1,000 running pods", old_steady, new_steady),
    ):
        o1, n1 = median_ms(old_run(ow)), median_ms(new_run(nw))
        o2, n2 = median_ms(old_run(ow)), median_ms(new_run(nw))
        print(
            f"{label}: {args.rev} {min(o1, o2):.0f} ms, working tree {min(n1, n2):.0f} ms "
            f"(medians of 15, best of two rounds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
