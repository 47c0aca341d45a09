"""`fovea-models cluster ...` as a user runs it: up, status, logs, down, crashes, signals.

Each test starts its own small cluster in its own state directory, while the
session's cluster keeps running: two instances side by side must not collide.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fovea.localcluster.cluster import LocalCluster
from waiting import eventually

# The `cluster` command group's own entry point (what `fovea-models cluster` dispatches to).
CLI = [sys.executable, "-m", "fovea.localcluster.cli"]
pytestmark = pytest.mark.integration


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def processes_of(state_dir: Path) -> list[psutil.Process]:
    """Every process that belongs to the cluster in `state_dir` (by arguments or cwd)."""
    mine = []
    needle = str(state_dir)
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        if needle in cmdline or (proc.info["cwd"] or "").startswith(needle):
            mine.append(proc)
    return mine


def state_of(state_dir: Path) -> dict[str, object]:
    return dict(json.loads((state_dir / "state.json").read_text()))


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "cluster"
    yield directory
    # Whatever a failing test left behind.
    cli("down", "--state-dir", str(directory))


def test_detached_cluster_status_logs_and_down(
    state_dir: Path, local_cluster: LocalCluster
) -> None:
    started = cli("up", "--detach", "--state-dir", str(state_dir), "--gpus", "1x8GiB")
    assert started.returncode == 0, started.stderr
    assert "kubeconfig" in started.stdout

    again = cli("up", "--detach", "--state-dir", str(state_dir))
    assert again.returncode == 1 and "already running" in again.stderr

    status = cli("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    for word in ("kube-apiserver", "etcd", "fovea-gpu-0", "8.0 GB", "(simulated)", "fovea-cpu-0"):
        assert word in status.stdout
    ours = state_of(state_dir)["ports"]
    theirs = state_of(local_cluster.state.root)["ports"]
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    assert not set(ours.values()) & set(theirs.values())

    path = cli("kubeconfig", "--state-dir", str(state_dir)).stdout.strip()
    assert path == str(state_dir / "kubeconfig")
    kubectl = ["kubectl", "--kubeconfig", path]
    subprocess.run(
        [*kubectl, "run", "hello", "--image=local", "--restart=Never", "--command", "--",
         "sh", "-c", "echo hello from the pod"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        [*kubectl, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/hello",
         "--timeout=60s"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    logs = cli("logs", "hello", "-n", "default", "--state-dir", str(state_dir))
    assert logs.returncode == 0 and logs.stdout == "hello from the pod\n"
    missing = cli("logs", "nobody", "--state-dir", str(state_dir))
    assert missing.returncode == 1 and "no log for pod default/nobody" in missing.stderr
    component = cli("logs", "--component", "kube-apiserver", "--state-dir", str(state_dir))
    assert component.returncode == 0 and "Serving securely" in component.stdout

    assert len(processes_of(state_dir)) >= 5  # supervisor and four components
    stopped = cli("down", "--state-dir", str(state_dir))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert processes_of(state_dir) == []
    assert cli("status", "--state-dir", str(state_dir)).returncode == 1
    assert local_cluster.failure is None  # the other cluster never noticed


def test_a_crashed_component_is_reported_by_name_and_restarted(state_dir: Path) -> None:
    assert cli("up", "--detach", "--state-dir", str(state_dir), "--gpus", "none").returncode == 0
    state = state_of(state_dir)
    components = state["components"]
    assert isinstance(components, dict)
    killed = int(components["kube-scheduler"]["pid"])
    os.kill(killed, signal.SIGKILL)

    def restarted() -> int | None:
        now = state_of(state_dir)["components"]
        entry = now.get("kube-scheduler") if isinstance(now, dict) else None
        pid = int(entry["pid"]) if entry else killed
        return pid if pid != killed and psutil.pid_exists(pid) else None

    assert eventually(restarted, 60), state_of(state_dir)
    said = (state_dir / "supervisor.log").read_text()
    assert "kube-scheduler: exited with code -9; restarting it in 1s (restart 1)" in said
    after = state_of(state_dir)
    assert after["ready"] is True and after["failure"] is None
    assert after["restarts"] == {"kube-scheduler": 1}
    assert psutil.pid_exists(int(str(state["pid"])))  # the supervisor runs on
    assert cli("down", "--state-dir", str(state_dir)).returncode == 0
    assert eventually(lambda: processes_of(state_dir) == [], 15)


def test_foreground_up_stops_everything_on_sigterm(state_dir: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "up", "--state-dir", str(state_dir), "--gpus", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    eventually(
        lambda: (
            proc.poll() is not None
            or ((state_dir / "state.json").exists() and state_of(state_dir).get("ready"))
        ),
        120,
    )
    assert state_of(state_dir).get("ready"), proc.stdout.read() if proc.stdout else ""
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "export KUBECONFIG=" in output
    assert processes_of(state_dir) == []


def test_bad_gpu_spec_is_refused_and_starts_nothing(state_dir: Path) -> None:
    result = cli("up", "--state-dir", str(state_dir), "--gpus", "2x24XB")  # no such unit
    assert result.returncode == 1
    assert "invalid GPU node '2x24XB'" in result.stderr
    assert processes_of(state_dir) == []


def test_down_without_a_cluster_says_so(state_dir: Path) -> None:
    result = cli("down", "--state-dir", str(state_dir))
    assert result.returncode == 0 and "no local cluster running" in result.stdout


def test_restart_keeps_objects_ports_and_restarts_pods(state_dir: Path) -> None:
    assert cli("up", "--detach", "--state-dir", str(state_dir), "--gpus", "none").returncode == 0
    kubectl = ["kubectl", "--kubeconfig", str(state_dir / "kubeconfig")]
    subprocess.run(
        [*kubectl, "run", "keeper", "--image=local", "--command", "--", "sleep", "600"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    wait = [*kubectl, "wait", "--for=jsonpath={.status.phase}=Running", "pod/keeper"]
    subprocess.run([*wait, "--timeout=60s"], check=True, capture_output=True, timeout=90)
    before = state_of(state_dir)["ports"]
    assert cli("down", "--state-dir", str(state_dir)).returncode == 0
    assert processes_of(state_dir) == []

    assert cli("up", "--detach", "--state-dir", str(state_dir), "--gpus", "none").returncode == 0
    assert state_of(state_dir)["ports"] == before
    subprocess.run([*wait, "--timeout=60s"], check=True, capture_output=True, timeout=90)
    sleepers = [p for p in processes_of(state_dir) if p.name() == "sleep"]
    assert len(sleepers) == 1
    assert cli("down", "--state-dir", str(state_dir), "--purge").returncode == 0
    assert not state_dir.exists()
