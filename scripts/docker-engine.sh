#!/usr/bin/env bash
# Make sure a Docker engine answers here: when `docker info` fails, start
# Debian's dockerd in the background (root only; a machine without systemd,
# such as CI's, never starts it itself). Its log: $FOVEA_CACHE/dockerd.log.
#
#   scripts/docker-engine.sh        exit 0: an engine answers; 2: none can run here
#
# The storage driver is overlay2 where the kernel mounts overlayfs, else vfs
# (slow and disk-hungry, but it works in any sandbox).
set -euo pipefail

DOCKER=${DOCKER:-docker}
cache=${FOVEA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fovea-models}
say() { echo "docker-engine: $*" >&2; }

"$DOCKER" info >/dev/null 2>&1 && exit 0
if ! command -v dockerd >/dev/null; then
    say "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
    exit 2
fi
if [[ $(id -u) != 0 ]]; then
    say "no Docker engine answers; start one (dockerd runs as root)"
    exit 2
fi

overlay_works() {
    local tmp rc=1
    tmp=$(mktemp -d -p /var/lib)
    mkdir "$tmp"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$tmp/lower,upperdir=$tmp/upper,workdir=$tmp/work" \
        "$tmp/merged" 2>/dev/null; then
        umount "$tmp/merged"
        rc=0
    fi
    rm -rf "$tmp"
    return $rc
}
driver=vfs
overlay_works && driver=overlay2

mkdir -p "$cache"
say "starting dockerd (storage driver $driver; log $cache/dockerd.log)"
nohup dockerd --storage-driver="$driver" >>"$cache/dockerd.log" 2>&1 &
for _ in $(seq 1 120); do
    "$DOCKER" info >/dev/null 2>&1 && exit 0
    sleep 0.5
done
say "dockerd did not answer within 60 s; its last words:"
tail -n 20 "$cache/dockerd.log" >&2
exit 2
