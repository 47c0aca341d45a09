"""Printing: tables for people (rich; colours only on a terminal), JSON and YAML for programs.

rich is imported only when a table or a live view is printed, YAML only for
`--output yaml`: the JSON path stays as light as the standard library.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fovea.domain.conditions import ConditionStatus, EventType, Outcome, Phase
from fovea.settings import get_settings

if TYPE_CHECKING:
    from rich.console import Console

FORMATS = ("table", "json", "yaml")
# Phases and outcomes in colour (a terminal only).
STYLES: dict[str, str] = {
    Phase.READY: "green",
    Phase.CPU_FALLBACK: "yellow",
    Phase.LOADING: "cyan",
    Phase.SCHEDULING: "cyan",
    Phase.PENDING: "cyan",
    Phase.FAILED: "red",
    Phase.UNSCHEDULABLE: "red",
    Phase.EVICTED: "yellow",
    Outcome.UNSCHEDULABLE: "red",
    Outcome.EVICTED: "yellow",
    EventType.WARNING: "yellow",
    ConditionStatus.TRUE: "green",
    ConditionStatus.FALSE: "red",
}

Column = tuple[str, Callable[[dict[str, Any]], str]]  # (header, the cell of a row)


def console(stderr: bool = False) -> Console:
    """A rich console: colour and live views on a terminal; plain text elsewhere."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    # Tables keep their natural width (a terminal wraps long lines, as with kubectl);
    # a live view (stderr on a terminal) fits the terminal.
    return Console(
        file=stream,
        highlight=False,
        soft_wrap=True,
        width=None if stderr and terminal else 10_000,
    )


def print_data(data: Any, fmt: str) -> None:
    """JSON (indented) or YAML of `data`."""
    if fmt == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_table(out: Console, rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> None:
    """A borderless table (kubectl-like); phases and outcomes coloured on a terminal."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        cells = [cell(row) for _, cell in columns]
        table.add_row(*(Text(value, style=STYLES.get(value, "")) for value in cells))
    with out.capture() as captured:
        out.print(table)
    # No padding after the last column (rich pads every cell to its column's width).
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def print_fields(out: Console, fields: Sequence[tuple[str, str]]) -> None:
    """`Label:  value` lines, the labels aligned."""
    from rich.text import Text

    width = max(len(label) for label, _ in fields) + 2
    for label, value in fields:
        line = Text()
        line.append(f"{label + ':':<{width}}", style="bold")
        line.append(value, style=STYLES.get(value, ""))
        out.print(line)


def error(message: str) -> None:
    """One line on stderr: `error: <the API's message>` (red on a terminal)."""
    if sys.stderr.isatty() and not get_settings().no_color:
        sys.stderr.write(f"\x1b[31merror:\x1b[0m {message}\n")
    else:
        sys.stderr.write(f"error: {message}\n")
