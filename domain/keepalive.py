"""Keep-alive, as Ollama users know it: how long an on-demand model stays loaded unused.

`keepAlive` is set per option (the catalog) or per selection (which wins): a
duration (`30s`, `5m`, `1h30m`, or plain seconds), `-1` (pinned: never
unloaded for idleness) or `0` (unloaded right after use). It applies to
on-demand selections only (load policy `onDemand`): an eager model is meant
to stay loaded.

The idle clock starts at the model's last activity: the later of its last use
(`status.lastUsed`, `status.runtime.lastUsed`), the last `/load`
(`spec.loadRequestedAt`) and the moment it became Ready. Once it has been
idle for longer than its keep-alive, the operator removes its pod and keeps
the selection, stamping `status.idleUnloadedAt`; it stays unloaded until an
activity later than that stamp (the next `/load` or use), then loads again.

Pure: times are epoch seconds; no clock is read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fovea.domain.budget import epoch_seconds
from fovea.domain.resources import (
    InferenceSettings,
    LoadPolicy,
    ModelOption,
    Phase,
    SelectionSpec,
)

PINNED = "-1"
_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse(text: str | None) -> float | None:
    """Seconds of a keep-alive; None when pinned (`-1`) or not set.

    ValueError for anything else than `-1`, plain seconds or a Go-style duration.
    """
    if text is None or text.strip() == PINNED:
        return None
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"keepAlive {text!r} is not -1, seconds or a duration like 5m or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def effective(selection: str | None, option: str | None) -> str | None:
    """The keep-alive in force: the selection's own, else the option's (None: not set)."""
    return selection if selection is not None else option


@dataclass(frozen=True)
class Idle:
    """The decision for one on-demand selection: unload it (now or still), and why."""

    unloaded_at: float  # when it became due (last activity + keepAlive); kept while unloaded
    message: str

    @property
    def stamp(self) -> str:
        """`unloaded_at` as the RFC 3339 time of `status.idleUnloadedAt`."""
        return datetime.fromtimestamp(self.unloaded_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def for_selection(
    spec: SelectionSpec,
    option: ModelOption,
    inference: InferenceSettings,
    status: Mapping[str, Any],
    now: float,
) -> Idle | None:
    """`decide()` for one ModelSelection (its spec, its option, its stored status as stored)."""
    if spec.effective_load_policy(inference) != LoadPolicy.ON_DEMAND:
        return None
    runtime = status.get("runtime") or {}
    activity = max(
        epoch_seconds(status.get("lastUsed")),
        epoch_seconds(runtime.get("lastUsed")),
        epoch_seconds(spec.load_requested_at),
    )
    return decide(
        effective(spec.keep_alive, option.keep_alive),
        loaded_since=_loaded_since(status),
        last_activity=activity,
        unloaded_at=epoch_seconds(status.get("idleUnloadedAt")) or None,
        now=now,
    )


def _loaded_since(status: Mapping[str, Any]) -> float | None:
    """When the model became Ready (its Ready condition's transition); None: not loaded."""
    if status.get("phase") not in (Phase.READY, Phase.CPU_FALLBACK):
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return epoch_seconds(cond.get("lastTransitionTime")) or None
    return None


def decide(
    keep_alive: str | None,
    *,
    loaded_since: float | None,
    last_activity: float,
    unloaded_at: float | None,
    now: float,
) -> Idle | None:
    """Whether an on-demand selection's model is (still) unloaded for idleness.

    `loaded_since`: when it became Ready (None: not loaded now); `last_activity`:
    its latest use or /load (0: never); `unloaded_at`: the stamp of an earlier
    idle unload, if any. None: load it (or keep it loaded) as usual.
    """
    seconds = parse(keep_alive)
    # The stamp is the moment the model became due (its last activity + keepAlive), never
    # the pass's clock: a use or /load after the activity the unload was decided on loads
    # it again, even one the deciding pass did not see yet (its snapshot was older).
    if unloaded_at is not None and last_activity <= unloaded_at - (seconds or 0.0):
        return Idle(unloaded_at, _message(keep_alive))  # still idle: no use since
    if seconds is None or loaded_since is None:
        return None  # pinned, not set, or not loaded: nothing to unload
    idle_from = max(loaded_since, last_activity)
    if now - idle_from > seconds or (seconds == 0 and now > idle_from):
        return Idle(idle_from + seconds, _message(keep_alive))
    return None


def _message(keep_alive: str | None) -> str:
    return (
        f"Unloaded: unused for its keepAlive ({keep_alive}); "
        "the selection stays and loads again on /load or use"
    )
