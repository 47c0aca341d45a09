"""Start a pod's container with its volumes mounted: the local node agent's container runtime.

Run as `python -I -S mountns.py PLAN.json -- COMMAND...` (stdlib only, no package
imports, so it starts fast). It enters a private mount namespace (as root:
`unshare(CLONE_NEWNS)`; otherwise inside a user namespace that maps the
user to itself), makes every mount private so nothing propagates back to
the machine, bind-mounts each volume of the plan onto its `mountPath`
(read-only where asked), changes to the working directory and `exec`s the
command: the pid the agent started is the container's process.

A mountPath that does not exist is made without leaving a trace on the
machine's real filesystem: its nearest existing ancestor is covered, in the
namespace only, by a tmpfs that holds every original entry bound back in
place (symlinks recreated), so the new directory lives in that tmpfs. When
the ancestor is `/` itself, the tmpfs is built at the plan's scratch
directory and becomes the process's root (`chroot`). A mountPath inside a
volume that is already mounted is made inside that volume, as container
runtimes do. Mounts go parents first; read-only ones are made read-only at
the end, so a volume nested in a read-only one still gets its mountpoint.

The plan's `keep` directories (the pod's own directory under the state
directory: its kubeconfig, its working directory; the virtual environment
and the package's source) stay visible where they
are even when a volume covers a parent of theirs (an `emptyDir` at `/tmp`
while the state directory is under `/tmp`): they are bound back in place.

Plan: {"mounts": [{"source", "target", "readOnly"}], "keep": [DIR], "scratch": DIR,
"cwd": DIR, "workingDir": DIR or null}. A mount that fails ends the process with code 128
and a message in the container's log.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
START_FAILED = 128

_libc = ctypes.CDLL(None, use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _call(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or ''} on {target}",
    )


def enter_namespace() -> None:
    """A private mount namespace (inside a user namespace when not root)."""
    if os.geteuid() == 0:
        _call(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    else:
        uid, gid = os.geteuid(), os.getegid()
        _call(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
        maps = {"setgroups": "deny", "uid_map": f"{uid} {uid} 1", "gid_map": f"{gid} {gid} 1"}
        for name, text in maps.items():
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    # Nothing mounted from here on may reach the machine's own mount table.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _nearest_existing(path: str) -> tuple[str, list[str]]:
    """The deepest existing ancestor of `path` (symlinks resolved) and the parts below it."""
    missing: list[str] = []
    current = path
    while not os.path.exists(current):
        current, name = os.path.split(current)
        missing.insert(0, name)
    return os.path.realpath(current), missing


class Mounter:
    """Applies one plan; remembers which directories are its own (free to create in)."""

    def __init__(self, scratch: str) -> None:
        self.scratch = scratch
        # Directories whose new entries land in our tmpfs (not their subdirectories:
        # those are the machine's own, bound back in).
        self.shadowed: set[str] = set()
        # Trees that are ours throughout: directories made in our tmpfs, volumes.
        self.ours: list[str] = []
        self.read_only: list[str] = []

    def shadow(self, directory: str) -> None:
        """Cover `directory` with a tmpfs that holds all its entries, bound back in place."""
        handle = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        try:
            info = os.fstat(handle)
            names = os.listdir(directory)
            root = directory == "/"
            place = self.scratch if root else directory
            mode = stat.S_IMODE(info.st_mode)
            options = f"mode={mode:o},uid={info.st_uid},gid={info.st_gid}"
            _mount("tmpfs", place, "tmpfs", 0, options)
            for name in names:
                source = f"/proc/self/fd/{handle}/{name}"
                target = os.path.join(place, name)
                entry = os.lstat(source)
                if stat.S_ISLNK(entry.st_mode):
                    os.symlink(os.readlink(source), target)
                    continue
                if stat.S_ISDIR(entry.st_mode):
                    os.mkdir(target)
                else:
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
                _mount(source, target, None, MS_BIND | MS_REC)
        finally:
            os.close(handle)
        if root:
            os.chroot(place)
            os.chdir("/")
        self.shadowed.add(directory)

    def make_mountpoint(self, target: str, directory: bool) -> None:
        """Create `target` (a directory, or an empty file) where it does not exist yet."""
        existing, missing = _nearest_existing(target)
        if existing not in self.shadowed and not any(_within(existing, t) for t in self.ours):
            self.shadow(existing)
        if existing in self.shadowed:
            self.ours.append(os.path.join(existing, missing[0]))
        path = existing
        for index, name in enumerate(missing):
            path = os.path.join(path, name)
            last = index == len(missing) - 1
            if last and not directory:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            else:
                os.mkdir(path, 0o755)

    def bind(self, source: str, target: str, read_only: bool) -> None:
        is_dir = os.path.isdir(source)
        if not os.path.exists(target):
            self.make_mountpoint(target, is_dir)
        elif os.path.isdir(target) != is_dir:
            kind = "a directory" if is_dir else "a file"
            raise OSError(f"cannot mount {kind} ({source}) on {target}: not {kind}")
        _mount(source, target, None, MS_BIND | MS_REC)
        self.ours.append(os.path.realpath(target))
        if read_only:
            self.read_only.append(target)

    def keep(self, path: str, handle: int) -> None:
        """Bind `path` (opened as `handle` before any mount) back in place if a mount hid it."""
        before = os.fstat(handle)
        try:
            now = os.stat(path)
            if (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino):
                return
        except OSError:
            self.make_mountpoint(path, directory=True)
        _mount(f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC)

    def seal(self) -> None:
        """Make the read-only volumes read-only (after every mountpoint inside them exists)."""
        for target in self.read_only:
            kept = os.statvfs(target).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def apply(plan: dict[str, Any]) -> None:
    """Enter the namespace, mount every volume, and change to the working directory."""
    enter_namespace()
    kept = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in plan.get("keep", [])]
    mounter = Mounter(plan["scratch"])
    mounts = [(os.path.normpath(m["target"]), m) for m in plan["mounts"]]
    for target, mount in sorted(mounts, key=lambda pair: pair[0].split("/")):
        mounter.bind(mount["source"], target, bool(mount.get("readOnly")))
    for path, handle in kept:
        mounter.keep(path, handle)
        os.close(handle)
    mounter.seal()
    working = plan.get("workingDir")
    os.chdir(working if working and os.path.isdir(working) else plan["cwd"])


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: mountns.py PLAN.json -- COMMAND...", file=sys.stderr)
        return 2
    with open(argv[1]) as handle:
        plan = json.load(handle)
    try:
        apply(plan)
    except OSError as exc:
        print(f"fovea-models node agent: cannot mount the pod's volumes: {exc}", file=sys.stderr)
        return START_FAILED
    command = argv[3:]
    try:
        os.execv(command[0], command)
    except OSError as exc:
        print(f"fovea-models node agent: cannot start {command[0]}: {exc}", file=sys.stderr)
    return START_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
