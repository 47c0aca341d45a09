"""What `select --wait` / `load --wait` show while a model gets ready: fetch, then load.

`stage_of` is pure: a task's view (GET /api/models/tasks) in, the stage out.
`WaitDisplay` draws it: on a terminal, rich progress bars (the fetch's bytes and
rate, then the load); elsewhere plain lines, one per stage and per tenth fetched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fovea.domain.conditions import Phase, WeightsPhase
from fovea.domain.units import format_bytes

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

FETCHING = "fetching"
LOADING = "loading"
WAITING = "waiting"
PLAIN_EVERY_S = 10.0  # a fetch of unknown size: a plain line at most this often


@dataclass(frozen=True)
class Stage:
    """Where a load stands: fetching (bytes), loading, or waiting (scheduling, pending)."""

    name: str
    done: int | None = None
    total: int | None = None
    rate: float | None = None
    fetched: int | None = None  # bytes the fetch downloaded (0: the cache had them)


def stage_of(view: dict[str, Any], model: str) -> Stage:
    """The stage of `model` in a task's view (only a status written for the current change)."""
    status = view.get("status") or {}
    if status.get("model") != model or status.get("observedGeneration") != view.get("generation"):
        return Stage(WAITING)
    weights = status.get("weights") or {}
    if weights.get("phase") == WeightsPhase.FETCHING:
        return Stage(
            FETCHING,
            done=int(weights.get("bytesDone") or 0),
            total=weights.get("bytesTotal"),
            rate=weights.get("bytesPerSecond"),
        )
    if status.get("phase") == Phase.LOADING:
        cached = weights.get("phase") == WeightsPhase.CACHED
        fetched = weights.get("fetchedBytes") if cached else None
        return Stage(LOADING, fetched=fetched)
    return Stage(WAITING)


def size(count: float | None) -> str:
    """Bytes for people: 512 B, 1.5 MB, 2.31 GB (the contract's units, domain/units.py)."""
    return format_bytes(count)


def stage_line(stage: Stage) -> str:
    """The stage in one plain line."""
    if stage.name == FETCHING:
        total = f" of {size(stage.total)}" if stage.total is not None else ""
        rate = f" at {size(stage.rate)}/s" if stage.rate else ""
        return f"fetching weights: {size(stage.done)}{total}{rate}"
    if stage.name == LOADING:
        if stage.fetched == 0:
            return "loading (weights were in the cache: 0 bytes fetched)"
        if stage.fetched is not None:
            return f"loading (weights fetched: {size(stage.fetched)})"
        return "loading"
    return "waiting"


class WaitDisplay:
    """Progress bars on a terminal, plain lines elsewhere (`out` is a stderr console)."""

    def __init__(self, out: Console, label: str) -> None:
        self.out, self.label = out, label
        self._progress: Progress | None = None
        self._fetch: TaskID | None = None
        self._load: TaskID | None = None
        self._last_plain: tuple[str, int] | None = None
        self._last_plain_at = 0.0
        self._last_line: str | None = None

    def __enter__(self) -> WaitDisplay:
        if self.out.is_terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                # rich's own columns count 10^3; these say sizes as everything else does.
                TextColumn("{task.fields[amount]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=self.out,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def show(self, stage: Stage, line: str | None) -> None:
        """Draw the latest stage; `line` is the general progress line (phase, node, message)."""
        if self._progress is not None:
            self._bars(stage, line)
        else:
            self._plain(stage, line)

    def done(self) -> None:
        """The model is Ready: the bars end full."""
        if self._progress is None:
            return
        if self._fetch is not None:
            self._fetched(self._progress, self._fetch)
        if self._load is not None:
            self._progress.update(self._load, total=1, completed=1)

    def _bars(self, stage: Stage, line: str | None) -> None:
        progress = self._progress
        assert progress is not None
        if stage.name == FETCHING:
            if self._fetch is None:
                self._fetch = progress.add_task(
                    f"{self.label}: fetch weights", total=stage.total, amount="", rate=""
                )
            progress.update(
                self._fetch,
                completed=stage.done or 0,
                total=stage.total,
                amount=size(stage.done) + (f"/{size(stage.total)}" if stage.total else ""),
                rate=f"{size(stage.rate)}/s" if stage.rate else "",
            )
        elif stage.name == LOADING:
            if self._fetch is not None:
                self._fetched(progress, self._fetch)
            if self._load is None:
                self._load = progress.add_task(
                    f"{self.label}: {stage_line(stage)}", total=None, amount="", rate=""
                )
        elif line and line != self._last_line:
            progress.console.print(f"{self.label}: {line}", highlight=False)
        self._last_line = line

    @staticmethod
    def _fetched(progress: Progress, fetch: TaskID) -> None:
        """The fetch bar ends full, its amount saying so."""
        task = progress.tasks[fetch]
        done = task.total or task.completed
        amount = size(done) + (f"/{size(task.total)}" if task.total else "")
        progress.update(fetch, completed=done, amount=amount)

    def _plain(self, stage: Stage, line: str | None) -> None:
        now = time.monotonic()
        if stage.name == FETCHING:
            if stage.total:  # a line per tenth
                step: tuple[str, int] | None = (FETCHING, (stage.done or 0) * 10 // stage.total)
                due = step != self._last_plain
            else:  # size unknown: a line every PLAIN_EVERY_S
                step = (FETCHING, -1)
                due = step != self._last_plain or now - self._last_plain_at >= PLAIN_EVERY_S
            if due:
                self.out.print(f"{self.label}: {stage_line(stage)}", highlight=False)
                self._last_plain, self._last_plain_at = step, now
            return
        step = (LOADING, 0) if stage.name == LOADING else None
        if step is not None and step == self._last_plain:
            return
        shown = stage_line(stage) if stage.name == LOADING else line
        if shown and shown != self._last_line:
            self.out.print(f"{self.label}: {shown}", highlight=False)
            self._last_line, self._last_plain = shown, step
