"""`fovea-models model-pod`: the command the operator puts in model-server pods.

It reads its identity from the environment (FOVEA_* and PORT), starts
reporting to its own ModelSelection, serves probes at once, and loads the
model in the background. A model that fails to load leaves the process up
(see `lifecycle`); an environment that names no valid model is a pod-spec bug
and exits 2, after reporting it where the selection is known.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from fovea.domain import constants as c
from fovea.domain.conditions import RuntimeState, SwitchPhase

CHECK_INTERVAL_SECONDS = 1.0
KEEP_ALIVE_SECONDS = 75  # idle keep-alive of the pod's connections (the API keeps its own 30 s)

log = logging.getLogger("fovea.model_pod")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=None, help=f"listen address (default ${c.ENV_HOST} or 0.0.0.0)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"listen port (default ${c.ENV_PORT} or 8080)"
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="do not write status to the cluster (running by hand, without a ModelSelection)",
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=30.0,
        help="how often the status is refreshed when nothing changes (default 30)",
    )


def _reporter(namespace: str, name: str, heartbeat: float) -> Any:
    from fovea.kube import ClusterUnreachable, api_client
    from fovea.model_pod.report import Reporter, selection_patcher

    try:
        api = api_client()
    except ClusterUnreachable as exc:
        log.error("cannot report status (serving anyway): %s", exc)
        return None
    reporter = Reporter(selection_patcher(api, namespace, name), heartbeat_seconds=heartbeat)
    reporter.start()
    return reporter


def _report_bad_environment(reason: str, heartbeat: float) -> None:
    """Best effort: tell the selection, if the environment names one, why nothing will load."""
    from fovea.domain.messages import LoadFailure, failure_reason
    from fovea.domain.resources import RuntimeReport
    from fovea.model_pod.settings import get_settings

    settings = get_settings()
    namespace, name = settings.namespace.strip(), settings.selection.strip()
    if not (namespace and name):
        return
    reporter = _reporter(namespace, name, heartbeat)
    if reporter is None:
        return
    reporter.set(
        RuntimeReport(
            state=RuntimeState.FAILED,
            failure=LoadFailure.BAD_ENVIRONMENT,
            reason=failure_reason(LoadFailure.BAD_ENVIRONMENT, reason),
            pod=settings.pod_name or None,
        )
    )
    reporter.stop(flush_timeout=10.0)


def _hold_weights(weights_path: str | None) -> Any:
    """Hold the fetched weights' cache entry (a shared flock) so no fetch evicts it."""
    if weights_path is None:
        return None
    from pathlib import Path

    from fovea.model_pod.adapters.base import LoadError
    from fovea.model_pod.weights.cache import HeldEntry

    held = HeldEntry(Path(weights_path))
    try:
        held.acquire()
    except OSError as exc:
        raise LoadError(f"the fetched weights cannot be used: {exc}") from exc
    return held


def _watch(service: Any, stop: threading.Event) -> None:
    while not stop.wait(CHECK_INTERVAL_SECONDS):
        service.check()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from fovea.model_pod.identity import IdentityError, identity_from_env

    try:
        identity = identity_from_env()
    except IdentityError as exc:
        print(f"fovea-models model-pod: {exc}", file=sys.stderr)
        _report_bad_environment(str(exc), args.heartbeat_seconds)
        return 2

    import uvicorn

    from fovea.model_pod.adapters import adapter_for
    from fovea.model_pod.adapters.base import LoadError
    from fovea.model_pod.drain import Drain, DrainingServer
    from fovea.model_pod.lifecycle import ModelService
    from fovea.model_pod.server import create_app

    reporter = None
    if identity.reports and not args.no_report:
        assert identity.namespace and identity.selection
        reporter = _reporter(identity.namespace, identity.selection, args.heartbeat_seconds)
    held = None
    held_at = None
    try:
        held = _hold_weights(identity.spec.weights_path)
        held_at = datetime.now(UTC) if held is not None else None
        adapter = adapter_for(identity.framework, identity.spec)
        service = ModelService(identity, adapter, reporter)
    except LoadError as exc:
        service = ModelService(identity, None, reporter)
        service.reason = str(exc)
    if held_at is not None:  # fetched weights, on this node's disk
        service.mark(SwitchPhase.WEIGHTS_READY, held_at)
    stop = threading.Event()
    from fovea.model_pod.warm import start_warm

    if not start_warm(service, stop):  # a warm pod loads and switches in its own thread
        threading.Thread(target=service.load, name="fovea-load", daemon=True).start()
    threading.Thread(target=_watch, args=(service, stop), name="fovea-watch", daemon=True).start()
    port = args.port or identity.port
    host = args.host or identity.host
    log.info(
        "model pod for task %s (%s %s) on %s, listening on %s:%d",
        identity.spec.task,
        identity.framework,
        identity.spec.model_id,
        identity.device,
        host,
        port,
    )
    started = time.monotonic()

    def shut_down() -> None:
        stop.set()
        log.info("shutting down after %.0fs", time.monotonic() - started)
        service.close()  # stops an engine's child process too
        if held is not None:
            held.release()
        if reporter is not None:
            reporter.stop()

    drain = Drain(identity.drain_seconds)
    config = uvicorn.Config(
        create_app(service, on_shutdown=shut_down, drain=drain),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        # Longer than the API's pooled connections live (api/gateway.py): the proxy, not the
        # pod, closes an idle one, so a request never goes out on a connection closing under it.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    # Returns on SIGINT; on SIGTERM it drains (drain.py: unready at once, answering for
    # the drain period), then uvicorn shuts down gracefully (running shut_down) and
    # re-raises the signal, so the process ends as Kubernetes expects (exit 143).
    DrainingServer(config, drain).run()
    return 0
