"""kopf handlers: thin. Startup, cleanup and the liveness probe; no resource handlers.

Placement is decided for all selections together, so no handler acts on one
object alone: the operator's watch-fed cache (fovea.operator.cache) sees each
change to a catalog, selection, node, model pod, namespace, claim or slice and
sets the planner's wake event, and the planner (fovea.operator.loop) does the
rest. kopf watches nothing itself (its watches would duplicate the cache's).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import prometheus_client

from fovea.client_rate import instrument
from fovea.domain import constants as c
from fovea.kube import api_client
from fovea.operator.cluster import Cluster, count_request
from fovea.operator.leader import Lease
from fovea.operator.loop import Planner
from fovea.operator.podspec import PodSettings
from fovea.operator.settings import get_settings
from fovea.version import VERSION

log = logging.getLogger(__name__)
# The release this operator runs, on /metrics: fovea_operator_build_info{version="..."} 1.
BUILD_INFO = prometheus_client.Info("fovea_operator_build", "The release of the running operator")
BUILD_INFO.info({"version": VERSION})


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """All kopf settings and the planner's start, in one place."""
    settings.posting.level = logging.WARNING  # our own Events explain decisions
    settings.watching.server_timeout = 300  # re-list every 5 min at the latest
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.persistence.finalizer = f"{c.GROUP}/operator"  # never used: no delete handlers
    ours = get_settings()
    api = api_client()
    # Every request is counted (fovea_operator_api_requests_total) and held to the client's
    # QPS and burst; the Lease has a client of its own, so a long run of writes never
    # delays its renewal.
    instrument(api, ours.client_qps, ours.client_burst, count=count_request)
    lease_api = api_client()
    instrument(lease_api, count=count_request)
    planner = Planner(
        cluster=Cluster(
            api,
            ours.namespaces,
            ours.model_pod_service_account,
            ours.default_quota(),
            cluster_role=ours.model_pod_cluster_role,
            resync_s=ours.cache_resync_seconds,
        ),
        lease=Lease(
            lease_api, ours.lease_name, ours.lease_namespace, ours.identity, ours.lease_seconds
        ),
        settings=ours,
        pod_settings=PodSettings(
            image=ours.model_pod_image,
            service_account=ours.model_pod_service_account,
            sharing_mode=ours.sharing_mode,
            dra_sharing=ours.dra_sharing,
            allowed_images=tuple(ours.allowed_images),
            warm_switches=ours.warm_switches,
            keep_warm_seconds=ours.keep_warm_seconds,
        ),
    )
    memo.planner = planner
    if ours.metrics_port:  # write failures per namespace, quotas (fovea.operator.cluster)
        prometheus_client.start_http_server(ours.metrics_port)
    loop = asyncio.get_running_loop()
    # The watch-fed cache (fovea.operator.cache): its changes wake the planner.
    planner.cluster.start(on_change=lambda: _wake(loop, planner))
    memo.tasks = [asyncio.create_task(planner.run()), asyncio.create_task(planner.keep_lease())]
    planner.wake.set()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):
        task.cancel()
    planner = memo.get("planner")
    if planner is not None:
        planner.cluster.cache.on_change = lambda: None
        await asyncio.to_thread(planner.lease.release)


@kopf.on.probe(id="planner")
def planner_alive(memo: kopf.Memo, **_: Any) -> str:
    """The liveness endpoint fails (HTTP 500) once no planning pass completed in 3 resyncs."""
    planner = memo.get("planner")
    if planner is None:
        return "starting"
    stale = planner.stale()
    if stale is not None:
        raise kopf.PermanentError(stale)  # permanent: the probe answers at once
    return "planning"


def _wake(loop: asyncio.AbstractEventLoop, planner: Planner) -> None:
    """Set the planner's wake event from a watch thread."""
    loop.call_soon_threadsafe(planner.wake.set)
