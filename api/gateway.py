"""The inference route's I/O: hold a request until a model can answer it, then pass it through.

One `Gateway` per API process. For each request it asks `routing.decide()`
where the request goes, against the cache's latest snapshot (the watch-fed
view of selections, pods and EndpointSlices: never a call to the API server,
so Ready models keep answering while the control plane is down), then:

- Serve: sends the body unchanged to the least busy Ready pod and streams the
  answer back as it arrives (never buffered), naming who answered
  (`X-Fovea-Model`, `X-Fovea-Pod`). A pod that refuses the connection (it
  just exited; nothing was sent) is skipped and the request goes to another
  or waits; a pod that fails after the request was sent answers 502.
- Hold: waits in the task's bounded queue and decides again after every
  change the cache sees. A full queue answers 429 with `Retry-After`; a wait
  that runs out answers 503 with the selection's phase and reason. A model
  unloaded by keep-alive (or on demand and not loaded) is loaded again by the
  first request that finds it so (`ModelService.load`, as `/load` does).
- Refuse: answers at once, with the reason. A refusal that rests on the
  catalog or selection as the cache saw them is first checked against the
  API server (`confirm.py`): the API server's own refusal is given when it
  refuses too; when the cache merely trails a write, the request waits (up to
  CATCH_UP_S) for the cache to see it.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from fovea.api.cache import ClusterCache, Snapshot
from fovea.api.errors import ApiError
from fovea.api.feed import ChangeFeed
from fovea.api.inference_metrics import InferenceMetrics
from fovea.api.routing import Backend, Hold, Refuse, Serve, decide
from fovea.api.service import ModelService
from fovea.api.settings import Settings
from fovea.api.state import with_fresh
from fovea.domain import constants as c

log = logging.getLogger(__name__)

HEADER_MODEL = "X-Fovea-Model"
HEADER_POD = "X-Fovea-Pod"
HEADER_HELD = "X-Fovea-Held-Ms"
HEADER_SWITCHING = "X-Fovea-Switching"
# An idle pooled connection to a pod is closed by us after this long, before the pod's own
# keep-alive (model_pod/main.py, 75 s) would close it under a request being sent on it.
POOL_KEEPALIVE_S = 30.0
REWAKE_S = 5.0  # a wake-up not seen by the operator after this long is written again
POLL_S = 1.0  # a held request re-decides at least this often, even with no change
CATCH_UP_S = 5.0  # the longest a request waits for the cache to see a write it trails
CONFIRMED_S = 0.5  # a confirmed refusal is given again without a read for this long
MAX_CONFIRMED = 1024  # confirmed refusals remembered at most (tasks)
# What of a client's request reaches the pod (never its Authorization: the API's token).
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "content-encoding", "user-agent")
CLIENT_GONE = 499  # nginx's word for a client that left before its answer
UNKNOWN_TASK = "(unknown)"  # the task label of requests for a task the catalog lacks
SMALL_BODY = 256 * 1024  # an answer this small (with its length known) is passed on whole
DROPPED_RESPONSE_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
)

ErrorBody = Callable[[int, str, Mapping[str, str]], Response]


class BodyTooLarge(Exception):
    """The request's body is over the model pod's limit (answered 413, nothing forwarded)."""


@dataclass(frozen=True)
class Forward:
    """One request as the gateway holds it: its task, the pod's path, body and headers."""

    task: str
    path: str
    body: bytes
    headers: Mapping[str, str]
    # Whether the client has gone (a held request leaves the queue then): Request.is_disconnected.
    gone: Callable[[], Awaitable[bool]] | None = None


def contract_error(status: int, message: str, extra: Mapping[str, str]) -> Response:
    """The contract's `{"error": ...}` body, with the phase/model fields when known."""
    body = {"error": message, **{k: v for k, v in extra.items() if v}}
    headers = {"Retry-After": extra["retry_after"]} if extra.get("retry_after") else None
    body.pop("retry_after", None)
    return JSONResponse(body, status_code=status, headers=headers)


async def read_body(request: Request, limit: int = c.MAX_PREDICT_BODY_BYTES) -> bytes:
    """The body, refused (BodyTooLarge) as soon as it is announced or read past `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge()
        except ValueError as exc:
            raise BodyTooLarge() from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


class Gateway:
    """Holds and forwards the requests of every task (one per API process)."""

    def __init__(
        self,
        cache: ClusterCache,
        feed: ChangeFeed,
        service: ModelService,
        settings: Settings,
        metrics: InferenceMetrics,
    ) -> None:
        self.cache = cache
        self.feed = feed
        self.service = service
        self.settings = settings
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None  # made on the app's loop
        self.held: dict[str, int] = defaultdict(int)  # requests waiting, per task
        self.in_flight: dict[str, int] = defaultdict(int)  # requests being answered, per pod
        self._turn = itertools.count()
        self._woken: dict[str, float] = {}  # task -> monotonic time of its last wake-up
        # Refusals the API server confirmed: (snapshot version, task -> (when, refusal)).
        self._confirmed: tuple[int, dict[str, tuple[float, Refuse]]] = (-1, {})

    def session(self) -> aiohttp.ClientSession:
        """The pooled client to the model pods (aiohttp: a tenth of httpx's CPU per request)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=POOL_KEEPALIVE_S),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self.settings.connect_timeout_seconds,
                    sock_read=self.settings.predict_timeout_seconds,
                ),
                auto_decompress=False,  # the pod's bytes, as it encoded them
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, request: Forward, error: ErrorBody = contract_error) -> Response:
        """Answer one request for `request.task` (see the module's docstring)."""
        started = time.monotonic()
        queued = False
        excluded: set[str] = set()
        version = -1
        deadline: float | None = None
        model = ""
        confirmed = False  # a refusal resting on the cache's view was checked (confirm.py)
        catch_up: float | None = None  # until then, wait for the cache to see what is stored
        try:
            while True:
                snap = self.cache.snapshot
                if snap.version != version:
                    version = snap.version
                    excluded.clear()  # a new view: a pod that refused may be back
                decision = decide(
                    snap.state,
                    request.task,
                    snap.state.endpoints,
                    snap.state.pod_models,
                    frozenset(excluded),
                )
                if isinstance(decision, Refuse):
                    if decision.confirm and not confirmed:
                        confirmed = True
                        confirmed_refusal = await self._confirm(snap, request.task, decision)
                        if confirmed_refusal is None:
                            catch_up = time.monotonic() + CATCH_UP_S
                        else:
                            decision = confirmed_refusal
                    if catch_up is not None and time.monotonic() < catch_up:
                        await self.feed.wait_change(min(catch_up - time.monotonic(), POLL_S))
                        continue
                    # An unknown task is counted under one label: a client inventing names
                    # must not invent metric series.
                    task = UNKNOWN_TASK if decision.status == 404 else request.task
                    self.metrics.answered(task, decision.model, decision.status, started)
                    extra = {"phase": decision.phase, "model": decision.model}
                    return error(decision.status, decision.message, extra)
                if isinstance(decision, Serve):
                    backend = self._pick(decision.backends)
                    held_s = time.monotonic() - started
                    if queued:
                        self._leave(request.task, held_s)
                        queued = False
                    answer = await self._send(request, decision, backend, started, held_s, error)
                    if answer is None:  # refused the connection: nothing was sent
                        excluded.add(backend.pod)
                        continue
                    return answer
                assert isinstance(decision, Hold)
                model = decision.model
                if not queued:
                    if self.held[request.task] >= self.settings.queue_length:
                        self.metrics.answered(request.task, model, 429, started)
                        retry = str(max(1, math.ceil(self._hold_limit(decision.selection) / 10)))
                        return error(
                            429,
                            f"Too many requests waiting for task '{request.task}' "
                            f"({self.settings.queue_length} held while '{model}' is "
                            f"{decision.phase}); retry later",
                            {"phase": decision.phase, "model": model, "retry_after": retry},
                        )
                    queued = True
                    self.held[request.task] += 1
                    self.metrics.queue(request.task, self.held[request.task])
                    deadline = started + self._hold_limit(decision.selection)
                if decision.wake:
                    refused = await self._wake(request.task)
                    if refused is not None:
                        self.metrics.answered(request.task, model, refused.status_code, started)
                        return error(refused.status_code, refused.message, {"model": model})
                assert deadline is not None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.metrics.answered(request.task, model, 503, started)
                    waited = time.monotonic() - started
                    return error(
                        503,
                        f"Model '{model}' of task '{request.task}' is not Ready after "
                        f"{waited:.0f} s: {decision.phase} ({decision.reason})",
                        {"phase": decision.phase, "model": model, "retry_after": "5"},
                    )
                await self.feed.wait_change(min(remaining, POLL_S))
                if request.gone is not None and await request.gone():
                    self.metrics.answered(request.task, model, CLIENT_GONE, started)
                    return Response(status_code=CLIENT_GONE)  # nobody reads it
        finally:
            if queued:
                self._leave(request.task, time.monotonic() - started)

    # --- parts ----------------------------------------------------------------

    def _pick(self, backends: tuple[Backend, ...]) -> Backend:
        """The backend with the fewest requests in flight (ties: in turn)."""
        turn = next(self._turn)
        ordered = backends[turn % len(backends) :] + backends[: turn % len(backends)]
        return min(ordered, key=lambda b: self.in_flight[b.pod])

    def _leave(self, task: str, held_s: float) -> None:
        self.held[task] -= 1
        self.metrics.queue(task, self.held[task])
        self.metrics.held(task, held_s)

    def _hold_limit(self, selection: str) -> float:
        """How long a request may wait for `selection`'s model (settings; docs/inference.md)."""
        if self.settings.hold_seconds is not None:
            return self.settings.hold_seconds
        sel = self.cache.snapshot.state.selections.get(selection)
        load_s = sel.status.load_time_seconds if sel is not None else None
        limit = max(self.settings.min_hold_seconds, 3 * (load_s or 0.0))
        return min(limit, self.settings.max_wait_seconds)

    async def _confirm(self, snap: Snapshot, task: str, refusal: Refuse) -> Refuse | None:
        """`refusal` (or the API server's own) when the API server holds it too; None when
        what it holds would not refuse: the cache has not seen a write yet (kubectl's).

        A refusal confirmed for a task is given again without a read for CONFIRMED_S, while
        the cache's view is the same: a client repeating a bad request costs the API server
        two reads per task and CONFIRMED_S, not two per request.
        """
        now = time.monotonic()
        version, held = self._confirmed
        if version != snap.version:
            held = {}
            self._confirmed = (snap.version, held)
        known = held.get(task)
        if known is not None and now - known[0] < CONFIRMED_S:
            return known[1]
        fresh = await self.service.fresh(task)
        if fresh is None:
            return refusal  # cannot be read: the cache's view stands
        state = snap.state
        view = with_fresh(state, fresh.catalog, fresh.catalog_error, task, fresh.selection)
        again = decide(view, task, view.endpoints, view.pod_models)
        if isinstance(again, Refuse):
            if len(held) >= MAX_CONFIRMED:
                held.clear()  # invented task names must not grow it
            held[task] = (now, again)
            return again
        log.info("the cache has not seen task %s's catalog or selection yet: waiting", task)
        return None

    async def _wake(self, task: str) -> ApiError | None:
        """Load an idle-unloaded (or on-demand, unloaded) model, once per REWAKE_S per task."""
        now = time.monotonic()
        last = self._woken.get(task)
        if last is not None and now - last < REWAKE_S:
            return None
        self._woken[task] = now
        log.info("a request for task %s loads its model (it was not loaded)", task)
        try:
            await self.service.load(task, None)
        except ApiError as exc:
            return exc
        return None

    async def _send(
        self,
        request: Forward,
        decision: Serve,
        backend: Backend,
        started: float,
        held_s: float,
        error: ErrorBody,
    ) -> Response | None:
        """Forward to `backend` and pass its answer on; None if it refused the connection."""
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED_REQUEST_HEADERS}
        self.in_flight[backend.pod] += 1
        try:
            response = await self.session().post(
                backend.url + request.path, data=request.body, headers=headers
            )
        except aiohttp.ClientConnectorError:
            self.in_flight[backend.pod] -= 1
            log.info("pod %s refused a connection; trying another", backend.pod)
            return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.in_flight[backend.pod] -= 1
            return self._broken(request, backend, started, exc, error)
        out = {
            k: v for k, v in response.headers.items() if k.lower() not in DROPPED_RESPONSE_HEADERS
        }
        # The pod names itself (model_pod/server.py); the route's view is the fallback.
        if HEADER_MODEL not in response.headers:
            out[HEADER_MODEL] = backend.model
        if HEADER_POD not in response.headers:
            out[HEADER_POD] = backend.pod
        out[HEADER_HELD] = str(round(held_s * 1000))
        if decision.switching:
            out[HEADER_SWITCHING] = "true"
        status = response.status
        small = response.content_length is not None and response.content_length <= SMALL_BODY
        if small and not response.content_type.startswith("text/event-stream"):
            # A whole small answer at once: cheaper than a stream, and nothing waits on it.
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return self._broken(request, backend, started, exc, error)
            finally:
                response.release()
                self.in_flight[backend.pod] -= 1
            self.metrics.answered(request.task, backend.model, status, started)
            return Response(body, status_code=status, headers=out)

        async def done() -> None:
            response.release()
            self.in_flight[backend.pod] -= 1
            self.metrics.answered(request.task, backend.model, status, started)

        return StreamingResponse(
            _passthrough(response, backend),
            status_code=status,
            headers=out,
            background=BackgroundTask(done),
        )

    def _broken(
        self,
        request: Forward,
        backend: Backend,
        started: float,
        exc: BaseException,
        error: ErrorBody,
    ) -> Response:
        """502: the pod failed after the request was sent (it may have run it)."""
        self.metrics.answered(request.task, backend.model, 502, started)
        return error(
            502,
            f"Model pod {backend.pod} ({backend.model}) failed during the request: "
            f"{type(exc).__name__}: {exc or 'connection lost'}",
            {"model": backend.model},
        )


async def _passthrough(response: aiohttp.ClientResponse, backend: Backend) -> AsyncIterator[bytes]:
    """The pod's answer, chunk by chunk as it arrives (a cut connection ends it)."""
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("pod %s broke off its answer: %s", backend.pod, exc)
