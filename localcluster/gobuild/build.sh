#!/usr/bin/env bash
# Build the local control plane binaries once per version, into a cache outside
# the repository: $FOVEA_CACHE (default ~/.cache/fovea-models)/k8s-<version>/bin.
# A second run with the binaries present builds nothing.
#   build.sh            kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd
#   build.sh kubelet    the kubelet of the container node (localcluster/containernode.py)
#   build.sh pause      its pod sandbox process (cmd/pause, a static binary)
# Prints the bin directory on stdout; progress and errors go to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
k8s_version=$(awk '$1=="k8s.io/kubernetes" {print $2}' "$here/go.mod" | head -n1)
cache=${FOVEA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fovea-models}
out="$cache/k8s-$k8s_version/bin"
case "${1:-control-plane}" in
  control-plane)
    bins=(kube-apiserver kube-controller-manager kube-scheduler etcd kubectl)
    pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
          k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ./cmd/etcd) ;;
  kubelet) bins=(kubelet); pkgs=(k8s.io/kubernetes/cmd/kubelet) ;;
  pause) bins=(pause); pkgs=(./cmd/pause) ;;
  *) echo "build.sh: unknown target '$1' (known: control-plane, kubelet, pause)" >&2; exit 2 ;;
esac

have_all() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all; then echo "$out"; exit 0; fi
# One build at a time per version: a second caller waits, then finds the binaries.
mkdir -p "$cache"
exec 9>"$cache/k8s-$k8s_version.lock"
flock 9
if have_all; then echo "$out"; exit 0; fi

fail() { echo "fovea-models: control-plane build failed at step '$1': $2" >&2; exit 1; }
command -v go >/dev/null || fail "find go" "the Go toolchain is not on PATH (needs Go >= $(awk '$1=="go"{print $2}' "$here/go.mod"))"

minor=${k8s_version#v}; major=${minor%%.*}; minor=${minor#*.}; minor=${minor%%.*}
commit=$(go mod download -json "k8s.io/kubernetes@$k8s_version" 2>/dev/null \
  | awk -F'"' '/"Hash"/ {print $4}' || true)
date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ld=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ld+=" -X $pkg.gitCommit=${commit:-unknown} -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date_utc"
done

tmp="$out.partial-${bins[0]}"
rm -rf "$tmp"; mkdir -p "$tmp"
cd "$here"
echo "fovea-models: downloading modules for Kubernetes $k8s_version (first build only)" >&2
go mod download || fail "go mod download" "could not fetch modules from the Go module proxy"
echo "fovea-models: compiling ${bins[*]} (first build takes a while on 2 cores)" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ld" -o "$tmp/" "${pkgs[@]}" \
  || fail "go build" "compilation failed (see the compiler output above)"
for b in "${bins[@]}"; do [ -x "$tmp/$b" ] || fail "check outputs" "$b was not produced"; done
# Each binary lands whole (mv within one filesystem): a reader sees all or none.
mkdir -p "$out"
for b in "${bins[@]}"; do mv "$tmp/$b" "$out/$b"; done
rm -rf "$tmp"
echo "$out"
