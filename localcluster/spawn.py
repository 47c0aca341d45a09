"""Start child processes that die with the cluster, and stop them cleanly.

Every process the cluster starts (control-plane components, pod processes) is
started from one long-lived thread with the kernel's parent-death signal set
(`setpriv --pdeathsig KILL`): if the supervisor is killed outright, its
children are killed too, and nothing is left behind. Linux sends that signal
when the *thread* that forked the child exits, which is why all forks happen
on one thread that lives as long as the spawner.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

import psutil

_SETPRIV = shutil.which("setpriv")


class Spawner:
    """Forks processes from one dedicated thread; stop it when the cluster stops."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Future[subprocess.Popen[bytes]], dict[str, object]] | None]
        self._jobs = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(subprocess.Popen(**kwargs))  # type: ignore[call-overload]
            except BaseException as exc:
                future.set_exception(exc)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in a new session (its own process group), output appended to `log`."""
        log.parent.mkdir(parents=True, exist_ok=True)
        command = list(argv)
        if _SETPRIV:
            command = [_SETPRIV, "--pdeathsig", "KILL", "--", *command]
        with log.open("ab") as out:
            future: Future[subprocess.Popen[bytes]] = Future()
            kwargs: dict[str, object] = {
                "args": command,
                "env": dict(env),
                "cwd": str(cwd) if cwd else None,
                "stdin": subprocess.DEVNULL,
                "stdout": out,
                "stderr": subprocess.STDOUT,
                "start_new_session": True,
                "close_fds": True,
            }
            self._jobs.put((future, kwargs))
            return future.result()

    def close(self) -> None:
        """Stop the spawning thread (children it started then get their death signal)."""
        self._jobs.put(None)
        self._thread.join(timeout=5)


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send `sig` to the process group of `proc` (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def terminate(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM the process group, SIGKILL it after `grace_s`; return the exit status."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(grace_s, 0.0))
    # Kill what is left of the group too (children that ignored SIGTERM).
    signal_group(proc, signal.SIGKILL)
    return proc.wait()


def wait_gone(pids: Sequence[int], timeout_s: float) -> list[int]:
    """Wait until none of `pids` exists; return those still alive after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _exists(pid)]
        if alive:
            time.sleep(0.05)
    return alive


def _exists(pid: int) -> bool:
    """Whether `pid` runs (a zombie, already dead but not yet reaped, does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
