"""Pure formatting of the `/api/models/events` server-sent event stream.

Events: `selection` (one per ModelSelection change, with its phase, the
model pod's report and its weights' fetch progress), `status` (the new
`/status` body whenever it changes: its `loading` section carries fetch and
load progress) and `sync` (the cache lost or regained the cluster).
"""

from __future__ import annotations

import json
from typing import Any

from fovea.api.cache import Change, Snapshot
from fovea.api.loading_view import weights_data

KEEPALIVE = b": keepalive\n\n"


def sse(event: str, data: bytes | str, event_id: int | None = None) -> bytes:
    """One server-sent event; `data` must be a single line (compact JSON is)."""
    text = data.decode() if isinstance(data, bytes) else data
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


def selection_data(change: Change) -> dict[str, Any]:
    """What a `selection` event says about one change."""
    sel = change.selection
    runtime = sel.status.runtime
    return {
        "type": change.event_type,
        "name": sel.name,
        "task": sel.spec.task,
        "model": sel.spec.model,
        "wanted": sel.spec.wanted,
        "generation": sel.generation,
        "observed_generation": sel.status.observed_generation,
        "phase": str(sel.status.phase),
        "message": sel.status.message,
        "model_id": sel.status.model_id,
        "device": sel.status.device,
        "node": sel.status.node,
        "runtime_state": runtime.state if runtime else None,
        "runtime_reason": runtime.reason if runtime else None,
        "weights": weights_data(sel.status.weights),  # fetch progress (docs/weights.md)
    }


def sync_data(snapshot: Snapshot) -> dict[str, Any]:
    """What a `sync` event says: synced or not, and which watch is broken why."""
    return {"synced": snapshot.synced, "unsynced": snapshot.unsynced}


def initial_events(snapshot: Snapshot) -> list[bytes]:
    """What a new subscriber gets first: the sync state and, if synced, the status."""
    out = [sse("sync", _compact(sync_data(snapshot)), snapshot.version)]
    if snapshot.synced:
        out.append(sse("status", snapshot.status_json, snapshot.version))
    return out


def events_between(previous: Snapshot, current: Snapshot) -> list[bytes]:
    """Events for going from `previous` to `current` (changes carried by `current`)."""
    out = [
        sse("selection", _compact(selection_data(ch)), current.version) for ch in current.changes
    ]
    if previous.synced != current.synced:
        out.append(sse("sync", _compact(sync_data(current)), current.version))
    if current.synced and current.status_json != previous.status_json:
        out.append(sse("status", current.status_json, current.version))
    return out


def _compact(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))
