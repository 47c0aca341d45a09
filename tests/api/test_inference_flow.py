"""The inference route on the real local cluster: real operator, real model pods, real Services.

Two tiny models whose answers differ in shape (10 outputs vs 5) let every
answer prove, by its own body, which model computed it: an observer
independent of the `X-Fovea-Model` header the route adds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import pytest

from api_server import ApiServer
from kube_testing import Kube, eventually, mlp_option

pytestmark = pytest.mark.integration

SWITCHES = 20
CLIENTS = 4
SAMPLE = {"inputs": [[0.5] * 64]}
WIDTH = {"ten": 10, "five": 5}  # outputs per sample, per model


CATALOG = {"tasks": {"det": {"options": {"ten": mlp_option(10), "five": mlp_option(5)}}}}


@dataclass(frozen=True)
class Answer:
    sent: float  # monotonic time the request left
    status: int
    model: str  # X-Fovea-Model
    pod: str  # X-Fovea-Pod
    width: int | None  # what the body says (outputs per sample)
    text: str


def _predict(http: httpx.Client, task: str = "det") -> Answer:
    sent = time.monotonic()
    resp = http.post(f"/api/models/predict/{task}", json=SAMPLE)
    width = None
    if resp.status_code == 200:
        width = resp.json()["shape"][-1]
    return Answer(
        sent,
        resp.status_code,
        resp.headers.get("x-fovea-model", ""),
        resp.headers.get("x-fovea-pod", ""),
        width,
        resp.text[:300],
    )


def _stream(api: ApiServer, stop: threading.Event, out: list[Answer]) -> None:
    with httpx.Client(base_url=api.url, timeout=120) as http:
        while not stop.is_set():
            out.append(_predict(http))


def _sent_since(answers: list[list[Answer]], since: float) -> int:
    return sum(1 for client in answers for a in list(client) if a.sent >= since)


def test_requests_reach_the_selected_model_through_twenty_switches(
    kube: Kube, operator: None, api: ApiServer
) -> None:
    kube.apply_catalog(CATALOG)
    # The API reads the catalog from its watch: a select before it arrives is refused
    # (under load it was: 500 "ModelCatalog 'default' not found").
    assert eventually(lambda: api.http.get("/api/models/config").status_code == 200 or None, 30)
    resp = api.http.post("/api/models/select?task_type=det&model_name=ten&wait=120")
    assert resp.status_code == 200, resp.text
    first = _predict(api.http)
    assert (first.status, first.model, first.width) == (200, "ten", 10), first

    stop = threading.Event()
    answers: list[list[Answer]] = [[] for _ in range(CLIENTS)]
    threads = [
        threading.Thread(target=_stream, args=(api, stop, answers[i]), daemon=True)
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    # Per switch: when select was sent, when it returned Ready, the model, and when the
    # next select went out (after every client had sent a few requests to this model).
    windows: list[tuple[float, float, str]] = []
    try:
        for n in range(SWITCHES):
            model = "five" if n % 2 == 0 else "ten"
            resp = api.http.post(f"/api/models/select?task_type=det&model_name={model}&wait=120")
            assert resp.status_code == 200, resp.text
            ready = time.monotonic()
            traffic = eventually(lambda: _sent_since(answers, ready) >= 3 * CLIENTS or None, 60)  # noqa: B023
            assert traffic, "no traffic after the switch"
            windows.append((ready, time.monotonic(), model))
    finally:
        stop.set()
        for t in threads:
            t.join(150)
    every = sorted((a for client in answers for a in client), key=lambda a: a.sent)
    failed = [a for a in every if a.status != 200]
    assert not failed, failed[:5]
    for a in every:  # the header names the model that computed the body
        assert WIDTH[a.model] == a.width, a
    # After a switch reported Ready (and before the next select), only the new model answers.
    for ready, until, model in windows:
        window = [a for a in every if ready <= a.sent < until]
        assert len(window) >= 2 * CLIENTS, (model, len(window))
        stale = [a for a in window if a.model != model]
        assert not stale, (model, stale[:3])
    assert {a.model for a in every} == {"ten", "five"}
