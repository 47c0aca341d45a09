#!/usr/bin/env bash
# The base image the Dockerfiles build FROM (their PYTHON_IMAGE build argument).
# Prints its name on stdout; progress goes to stderr.
#
#   scripts/make-base-image.sh [python|torch]
#
#   python  Python 3.11 (control plane): the official python:3.11.13-slim-bookworm
#           when a registry serves it, else fovea.local/python:3.11-bookworm made
#           here from Debian bookworm's packages.
#   torch   Python with a CPU-only torch and torchvision (model pods without a
#           GPU) when the PyTorch wheel index is out of reach: always made here,
#           fovea.local/python-torch:trixie, from Debian trixie's packages
#           (python3-torch, python3-torchvision: CPU builds).
#
# A made base is a minimal Debian root filesystem (debootstrap --variant=minbase)
# imported with `docker import`. The root filesystem is cached as a tarball in
# $FOVEA_CACHE (default ~/.cache/fovea-models)/base: a second run, or a run after
# `docker rmi`, makes nothing new.
# Environment: DOCKER (default docker), MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

DOCKER=${DOCKER:-docker}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
cache=${FOVEA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fovea-models}/base
kind=${1:-python}

case "$kind" in
    python)
        official=python:3.11.13-slim-bookworm
        suite=bookworm
        packages=python3,python3-venv,python-is-python3,ca-certificates
        tag=fovea.local/python:3.11-bookworm
        ;;
    torch)
        official=""
        suite=trixie
        packages=python3,python3-venv,python-is-python3,ca-certificates,python3-torch,python3-torchvision
        tag=fovea.local/python-torch:trixie
        ;;
    *)
        echo "make-base-image: unknown base '$kind' (known: python, torch)" >&2
        exit 1
        ;;
esac

say() { echo "make-base-image: $*" >&2; }

if [[ -n "$official" ]]; then
    if "$DOCKER" image inspect "$official" >/dev/null 2>&1 \
        || timeout 120 "$DOCKER" pull --quiet "$official" >/dev/null 2>&1; then
        echo "$official"
        exit 0
    fi
    say "no registry serves $official here: making $tag from Debian $suite's packages"
fi
if "$DOCKER" image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi

mkdir -p "$cache"
tarball="$cache/$kind-$suite.tar"
exec 9>"$cache/$kind.lock"
flock 9
if [[ ! -s "$tarball" ]]; then
    command -v debootstrap >/dev/null \
        || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    rootfs="$cache/$kind-$suite.rootfs"
    rm -rf "$rootfs"
    say "debootstrap $suite ($packages), first run only"
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$MIRROR" >&2
    # What an image needs no copy of: package lists and caches, documentation,
    # translations, and this machine's resolver and hostname (docker mounts its own).
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
        "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname
    find "$rootfs" -name __pycache__ -type d -prune -exec rm -rf {} +
    tar -C "$rootfs" --numeric-owner -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$rootfs"
fi
say "importing $tarball as $tag"
"$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$tarball" "$tag" >/dev/null
echo "$tag"
