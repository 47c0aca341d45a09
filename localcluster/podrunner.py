"""One pod's life on a local node: start its process, probe it, restart it, end it.

A `PodRunner` owns one pod (by uid) and runs on its own thread. It waits on
the process (a pidfd) and on news from the agent's watch (an eventfd), so it
reacts at once to an exit or a deletion and sleeps otherwise; probes run on
their own schedule. Every change it sees is written to the pod's status
subresource (`podstatus.pod_status`); probe timing is `probeschedule`'s.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from fovea.domain import constants as c
from fovea.localcluster import initcontainers, podspec, volumes
from fovea.localcluster.dra import API_PATH, pod_claim_names, visible_devices
from fovea.localcluster.kubeconfig import kubeconfig, write_kubeconfig
from fovea.localcluster.nodes import NodePlan
from fovea.localcluster.podspec import ContainerConfigError, Probe
from fovea.localcluster.podstatus import HOST_IP, Observed, Terminated, pod_status, rfc3339
from fovea.localcluster.probes import run_probe
from fovea.localcluster.probeschedule import ProbeSchedule
from fovea.localcluster.rest import MERGE_PATCH, ApiError, Rest
from fovea.localcluster.settings import child_environment
from fovea.localcluster.spawn import Spawner, terminate
from fovea.localcluster.state import StateDir

CONFIG_RETRY_S = 2.0
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
PROBE_KINDS = ("startup", "readiness", "liveness")  # ProbeSchedule's argument order
IDLE_WAKE_S = 60.0
# How long a pod's service-account token lives (it is not rotated while the pod runs).
TOKEN_SECONDS = 30 * 24 * 3600
# When the whole cluster stops, pods get at most this long to exit on SIGTERM.
SHUTDOWN_GRACE_S = 5.0


@dataclass
class AgentContext:
    """What every runner shares: the cluster connection and this machine's facts."""

    rest: Rest
    spawner: Spawner
    state: StateDir
    server: str
    ca_pem: bytes
    nodes: Mapping[str, NodePlan]
    venv_bin: Path
    cpu: int
    memory_bytes: int
    log: Callable[[str], None]


class PodHost(Protocol):
    """What a runner needs from the agent that owns it."""

    def allocate_port(self, uid: str) -> int:
        """A free loopback port for the pod `uid`, held until `forget(uid)`."""
        ...

    def allocate_address(self, uid: str, port: int, preferred: str | None) -> str:
        """The pod's own address (`podnet`), where `port` (0: any) is free; held until
        `forget(uid)`. `preferred`: the address it was reported at before, kept when free."""
        ...

    def forget(self, uid: str) -> None:
        """The runner of pod `uid` has finished."""
        ...


class PodRunner:
    """Runs one pod's first container as a local process until the pod is deleted."""

    def __init__(self, ctx: AgentContext, host: PodHost, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.ctx = ctx
        self.host = host
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self._pod = pod
        self._lock = threading.Lock()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._gone = False
        self._shutdown = False
        self._closed = False
        self._port: int | None = None  # the port its process listens on
        self._address: str | None = None  # its own address (podnet), for its whole life
        self._proc: subprocess.Popen[bytes] | None = None
        self._annotated = False
        self._kubeconfig: Path | None = None
        self._live_log: Path | None = None  # the log the running process writes
        self._thread = threading.Thread(target=self._main, name=f"pod-{self.name}", daemon=True)

    # --- called from the agent's threads -------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the pod's process is alive now (it may still write its log)."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    def start(self) -> None:
        self._thread.start()

    def log_of(self, container: str | None) -> tuple[Path, bool]:
        """The log of one of the pod's containers, and whether its process may still write it.

        An init container's name gives its own log; any other name the pod's container's.
        """
        spec = self._latest()["spec"]
        state = self.ctx.state
        if container in {c["name"] for c in spec.get("initContainers") or []}:
            path = state.container_log(self.namespace, self.name, self.uid, str(container))
        else:
            path = state.pod_log(self.namespace, self.name, self.uid)
        return path, self.running and self._live_log == path

    def update(self, pod: dict[str, Any]) -> None:
        """A newer version of the pod arrived from the watch."""
        with self._lock:
            self._pod = pod
        self._notify()

    def gone(self) -> None:
        """The pod no longer exists in the API (deleted without our help)."""
        self._gone = True
        self._notify()

    def shutdown(self) -> None:
        """The agent stops: end the process, leave the pod object as it is."""
        self._shutdown = True
        self._notify()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _notify(self) -> None:
        with self._lock:
            # Once the runner has ended, its eventfd number may belong to another file.
            if not self._closed:
                os.eventfd_write(self._wake, 1)

    # --- the runner thread ----------------------------------------------------------------

    def _latest(self) -> dict[str, Any]:
        with self._lock:
            return self._pod

    def _stopping(self) -> bool:
        pod = self._latest()
        return self._gone or self._shutdown or bool(pod["metadata"].get("deletionTimestamp"))

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)

    def _wait(self, timeout_s: float, pidfd: int | None = None) -> bool:
        """Sleep up to `timeout_s`; True if woken by news or the process (not the clock)."""
        fds = [self._wake] if pidfd is None else [self._wake, pidfd]
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout_s))
        if self._wake in ready:
            self._drain_wake()
        return bool(ready)

    def _main(self) -> None:
        try:
            self._lifecycle()
        except Exception as exc:
            # Unexpected: end the process but leave the pod object. The next
            # watch event about the pod gives it a new runner, which starts it again.
            self.ctx.log(f"pod {self.namespace}/{self.name}: node agent error: {exc!r}")
            self._end_process(SHUTDOWN_GRACE_S)
        finally:
            self.host.forget(self.uid)
            with self._lock:
                self._closed = True
                os.close(self._wake)

    def _lifecycle(self) -> None:
        pod = self._latest()
        spec = pod["spec"]
        status = pod.get("status") or {}
        container = spec["containers"][0]
        # Its address first, so that every status names it; a declared port (the
        # one a Service's EndpointSlice names) must be free there.
        self._address = self.host.allocate_address(
            self.uid, podspec.declared_port(container) or 0, status.get("podIP")
        )
        previous = (status.get("containerStatuses") or [{}])[0]
        init_specs = spec.get("initContainers") or []
        obs = Observed(
            phase="Pending",
            start_time=status.get("startTime") or rfc3339(),
            container=container["name"],
            image=container.get("image", ""),
            restart_count=int(previous.get("restartCount", 0)),
            init=initcontainers.initial(init_specs, status.get("initContainerStatuses") or []),
        )
        if not obs.initialized:
            obs = replace(obs, waiting_reason=initcontainers.WAITING_FOR_INIT)
        # A pod that finished before an agent restart stays finished.
        if status.get("phase") not in ("Succeeded", "Failed"):
            policy = spec.get("restartPolicy", "Always")
            initialized = self._run_init(obs, init_specs, policy)
            if initialized is not None:
                self._run(initialized, None, container, policy)
        while not self._stopping():
            self._wait(3600)
        self._finish()

    def _run_init(
        self, obs: Observed, containers: list[dict[str, Any]], policy: str
    ) -> Observed | None:
        """Run the init containers not completed yet, in order (`initcontainers`).

        Returns the pod's view once all have completed, None when the pod failed or stops.
        """
        for index, container in enumerate(containers):
            if obs.init[index].completed:
                continue
            done = self._run(obs, index, container, policy)
            if done is None:
                return None
            obs = done
        return replace(obs, waiting_reason=None, waiting_message="")

    def _run(
        self, obs: Observed, slot: int | None, container: dict[str, Any], policy: str
    ) -> Observed | None:
        """Start, supervise and restart one container until it is done or the pod stops.

        `slot`: the index of an init container, or None for the pod's container.
        Returns the pod's view once an init container has completed, else None.
        """
        streak = 0  # quick crashes in a row, for the restart backoff
        while not self._stopping():
            try:
                argv, env, cwd = self._prepare(self._latest(), container)
                probes = [
                    Probe.parse(container.get(f"{kind}Probe")) if slot is None else None
                    for kind in PROBE_KINDS
                ]
            except ContainerConfigError as exc:
                waiting = replace(
                    _get(obs, slot), waiting_reason=exc.reason, waiting_message=str(exc)
                )
                obs = _put(obs, slot, waiting)
                self._report(obs)
                self._wait(CONFIG_RETRY_S)
                continue
            began = time.monotonic()
            obs = self._supervise(argv, env, cwd, probes, obs, slot)
            finished = _get(obs, slot).terminated
            if self._stopping() or finished is None:
                return None
            if slot is None:
                restart = podspec.should_restart(policy, finished.exit_code)
            else:
                step = initcontainers.after_exit(policy, finished.exit_code)
                if step is initcontainers.AfterExit.NEXT:
                    return obs
                restart = step is initcontainers.AfterExit.RESTART
            if not restart:
                ended = "Succeeded" if finished.exit_code == 0 and slot is None else "Failed"
                self._report(replace(obs, phase=ended))
                return None
            ran_long = time.monotonic() - began >= podspec.BACKOFF_RESET_AFTER_S
            delay = podspec.backoff_s(0 if ran_long else streak)
            streak = 1 if ran_long else streak + 1
            backing_off = replace(
                _get(obs, slot),
                terminated=None,
                last_terminated=finished,
                waiting_reason="CrashLoopBackOff",
                waiting_message=f"back-off {delay:g}s restarting failed container",
            )
            obs = _put(obs, slot, backing_off)
            self._report(obs)
            deadline = time.monotonic() + delay
            while not self._stopping() and time.monotonic() < deadline:
                self._wait(deadline - time.monotonic())
            item = _get(obs, slot)
            obs = _put(obs, slot, replace(item, restart_count=item.restart_count + 1))
        return None

    def _end_process(self, max_grace_s: float | None = None) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            grace = podspec.grace_period_s(self._latest())
            terminate(proc, grace if max_grace_s is None else min(grace, max_grace_s))

    def _finish(self) -> None:
        """End the process (if any) and, unless the agent is just stopping, the pod."""
        self._end_process(SHUTDOWN_GRACE_S if self._shutdown else None)
        if self._shutdown:
            return
        if not self._gone:
            self._delete_pod()
        # Like a container's filesystem, the pod's directory (and token) goes with it.
        shutil.rmtree(self.ctx.state.pods / self.uid, ignore_errors=True)

    def _delete_pod(self) -> None:
        """Complete the deletion (grace period 0), as a kubelet does once its containers end."""
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        for delay in (*RETRY_DELAYS_S, None):
            try:
                self.ctx.rest.request("DELETE", path, body=body)
                return
            except ApiError as exc:
                if exc.status in (404, 409):  # gone, or a new pod of the same name
                    return
                if not exc.transient or delay is None:
                    raise
            time.sleep(delay)

    # --- starting -------------------------------------------------------------------------

    def _lookup(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        plural = "secrets" if kind == "secret" else "configmaps"
        try:
            obj = self.ctx.rest.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        if kind == "secret":
            return podspec.decode_secret(obj.get("data"))
        return dict(obj.get("data") or {})

    def _prepare(
        self, pod: dict[str, Any], container: dict[str, Any]
    ) -> tuple[list[str], dict[str, str], Path]:
        """Port, credentials, environment and command line of the next start."""
        try:
            return self._prepare_from_api(pod, container)
        except ApiError as exc:
            raise ContainerConfigError(f"the API server did not answer: {exc}") from exc

    def _prepare_from_api(
        self, pod: dict[str, Any], container: dict[str, Any]
    ) -> tuple[list[str], dict[str, str], Path]:
        node = self.ctx.nodes[pod["spec"]["nodeName"]]
        address = self._address
        assert address is not None  # given before the first start (_lifecycle)
        if self._port is None:
            # Its declared port, on its own address (as in a pod network); a container
            # that declares none gets a port no other pod of this machine holds.
            declared = podspec.declared_port(pod["spec"]["containers"][0])
            self._port = declared or self.host.allocate_port(self.uid)
        agent_env = {c.ENV_PORT: str(self._port), c.ENV_HOST: address}
        if not self._annotated:
            self._annotate(node)
            self._annotated = True
        pod_env = podspec.container_env(
            pod,
            container,
            self._lookup,
            pod_ip=address,
            host_ip=HOST_IP,
            cpu=self.ctx.cpu,
            memory=self.ctx.memory_bytes,
            preset=agent_env,
        )
        env = self._base_env()
        env.update(pod_env)
        # What the agent provides wins over the pod's own values: each process
        # must listen where its pod is reported (address and port).
        env.update(agent_env)
        env["HOSTNAME"] = self.name
        if pod["spec"].get("automountServiceAccountToken", True) is not False:
            env[c.ENV_KUBECONFIG] = str(self._pod_kubeconfig(pod))
        if node.gpus is not None and node.gpus.simulated:
            env[c.ENV_SIMULATED_GPU] = "1"
        elif node.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in node.gpus.device_indices)
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
        env.update(self._claimed_devices(pod, node))  # DRA: exactly the allocated GPUs
        argv = podspec.command_line(container, env, self.ctx.venv_bin)
        cwd = self.ctx.state.pods / self.uid
        cwd.mkdir(parents=True, exist_ok=True)
        working_dir = container.get("workingDir")
        if working_dir and Path(working_dir).is_dir():
            cwd = Path(working_dir)
        return self._with_volumes(pod, container, argv, cwd), env, cwd

    def _with_volumes(
        self, pod: dict[str, Any], container: dict[str, Any], argv: list[str], cwd: Path
    ) -> list[str]:
        """`argv` run in a mount namespace with the container's volumes (`volumes`), if any."""
        state = self.ctx.state
        found = volumes.resolve_volumes(pod, state.root, self.ctx.rest)
        mounts = volumes.container_mounts(container, found)
        if not mounts:
            return argv
        pod_dir = state.pods / self.uid
        plan = volumes.write_plan(
            pod_dir / "mounts" / f"{container['name']}.json",
            mounts,
            # Its kubeconfig, working directory and Python stay visible, whatever is mounted.
            keep=[pod_dir, *volumes.RUNTIME_DIRS],
            scratch=pod_dir / "root",
            cwd=cwd,
            working_dir=container.get("workingDir"),
        )
        return volumes.wrap(argv, plan)

    def _claimed_devices(self, pod: dict[str, Any], node: NodePlan) -> dict[str, str]:
        """What the DRA driver's CDI spec would expose: the GPUs allocated to the pod's claims."""
        claims = []
        for name in pod_claim_names(pod):
            try:
                claims.append(
                    self.ctx.rest.get(
                        f"{API_PATH}/namespaces/{self.namespace}/resourceclaims/{name}"
                    )
                )
            except ApiError as exc:
                if exc.status == 404:
                    raise ContainerConfigError(f"resource claim {name} not found") from exc
                raise
        return visible_devices(claims, node, self.uid) if claims else {}

    def _base_env(self) -> dict[str, str]:
        """The agent's environment without anything that would describe another pod."""
        env = child_environment(
            lambda k: k.startswith("FOVEA_") or k in (c.ENV_KUBECONFIG, "CUDA_VISIBLE_DEVICES")
        )
        env["PATH"] = os.pathsep.join([str(self.ctx.venv_bin), env.get("PATH", "/usr/bin:/bin")])
        return env

    def _annotate(self, node: NodePlan) -> None:
        annotations = {c.ANNOTATION_LOCAL_PORT: str(self._port)}
        if node.simulated_gpu:
            annotations[c.ANNOTATION_SIMULATED_GPU] = "true"
        body = {"metadata": {"uid": self.uid, "annotations": annotations}}
        self.ctx.rest.request(
            "PATCH",
            f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
            body=body,
            content_type=MERGE_PATCH,
        )

    def _pod_kubeconfig(self, pod: dict[str, Any]) -> Path:
        """A kubeconfig with a token of the pod's service account, bound to the pod."""
        if self._kubeconfig is not None:
            return self._kubeconfig
        account = pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": TOKEN_SECONDS,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.name,
                    "uid": self.uid,
                },
            },
        }
        try:
            answer = self.ctx.rest.request(
                "POST",
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
                body=request,
            )
        except ApiError as exc:
            raise ContainerConfigError(f"token for service account {account}: {exc}") from exc
        config = kubeconfig(
            self.ctx.server,
            self.ctx.ca_pem,
            user=f"system:serviceaccount:{self.namespace}:{account}",
            token=answer["status"]["token"],
            namespace=self.namespace,
        )
        self._kubeconfig = write_kubeconfig(self.ctx.state.pods / self.uid / "kubeconfig", config)
        return self._kubeconfig

    # --- running --------------------------------------------------------------------------

    def _report(self, obs: Observed) -> None:
        """Write the pod's status; a pod that vanished meanwhile counts as gone."""
        pod = self._latest()
        status = pod_status(
            obs,
            pod.get("status") or {},
            rfc3339(),
            pod["metadata"].get("generation"),
            pod_ip=self._address or HOST_IP,
        )
        body = {"metadata": {"uid": self.uid}, "status": status}
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        for delay in (*RETRY_DELAYS_S, None):
            try:
                self.ctx.rest.request("PATCH", path, body=body, content_type=MERGE_PATCH)
                return
            except ApiError as exc:
                if exc.status == 404:
                    self._gone = True
                    return
                if exc.status == 409:  # uid precondition failed: a new pod of the same name
                    return
                if not exc.transient or delay is None:
                    # The process keeps running; the next report says where it is.
                    self.ctx.log(f"pod {self.namespace}/{self.name}: status not written: {exc}")
                    return
            time.sleep(delay)

    def _supervise(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        probes: list[Probe | None],
        obs: Observed,
        slot: int | None,
    ) -> Observed:
        """Probe and watch the process until it exits, a probe kills it, or the pod stops.

        Returns `obs` with the process's end in `terminated` of the container in `slot`.
        """
        log = self.ctx.state.pod_log(self.namespace, self.name, self.uid)
        if slot is not None:
            container = obs.init[slot].container
            log = self.ctx.state.container_log(self.namespace, self.name, self.uid, container)
        self._live_log = log
        proc = self._proc = self.ctx.spawner.spawn(argv, env=env, log=log, cwd=cwd)
        item = replace(
            _get(obs, slot),
            running_since=rfc3339(),
            pid=proc.pid,
            waiting_reason=None,
            waiting_message="",
            terminated=None,
        )
        schedule = ProbeSchedule(time.monotonic(), *probes)
        item = replace(item, started=schedule.started, ready=schedule.ready)
        if slot is None:  # the pod's container: `item` is the pod's view
            item = replace(item, phase="Running")
        obs = _put(obs, slot, item)
        self._report(obs)
        message = ""
        pidfd = os.pidfd_open(proc.pid)
        try:
            while proc.poll() is None and not message:
                if self._stopping():
                    grace = podspec.grace_period_s(self._latest())
                    terminate(proc, min(grace, SHUTDOWN_GRACE_S) if self._shutdown else grace)
                    message = "killed: the pod is being deleted"
                    break
                for name in schedule.due(time.monotonic()):
                    inside = proc.pid if volumes.wrapped(argv) else None
                    probe = schedule.probe(name)
                    # Only the pod's container has probes (init containers have none).
                    container = self._latest()["spec"]["containers"][0]
                    port = podspec.probe_port(probe, container, self._port or 0)
                    host = self._address or HOST_IP
                    ok = run_probe(probe, host, port, env, cwd, inside)
                    outcome = schedule.record(name, ok, time.monotonic())
                    if outcome.changed:
                        item = replace(item, started=schedule.started, ready=schedule.ready)
                        obs = _put(obs, slot, item)
                        self._report(obs)
                    if outcome.kill:
                        message = outcome.kill
                        terminate(proc, podspec.grace_period_s(self._latest()))
                        break
                next_due = schedule.next_due()
                idle = IDLE_WAKE_S if next_due is None else next_due - time.monotonic()
                self._wait(min(idle, IDLE_WAKE_S), pidfd)
        finally:
            os.close(pidfd)
        code = proc.wait()
        exit_code = code if code >= 0 else 128 - code  # killed by signal N: 128 + N
        if code < 0 and not message:
            message = f"killed by signal {signal.Signals(-code).name}"
        finished = Terminated(
            exit_code=exit_code,
            reason=podspec.exit_reason(exit_code),
            started_at=item.running_since or rfc3339(),
            finished_at=rfc3339(),
            message=message,
            pid=proc.pid,
        )
        item = replace(item, running_since=None, ready=False, started=False, terminated=finished)
        return _put(obs, slot, item)


def _get(obs: Observed, slot: int | None) -> Observed:
    """The container in `slot` of the pod's view: an init container's index, or None."""
    return obs if slot is None else obs.init[slot]


def _put(obs: Observed, slot: int | None, item: Observed) -> Observed:
    """The pod's view with the container in `slot` replaced by `item`."""
    if slot is None:
        return item
    return replace(obs, init=initcontainers.replace_at(obs.init, slot, item))
