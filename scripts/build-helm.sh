#!/usr/bin/env bash
# Build helm once per version from the Go module proxy, into the same cache as the
# control-plane binaries: $FOVEA_CACHE (default ~/.cache/fovea-models)/helm-<version>/bin.
# A second run with the binary present builds nothing. Prints the bin directory on
# stdout; progress and errors go to stderr.
#   FOVEA_HELM_VERSION   the helm release (default below; the chart is tested with it)
set -euo pipefail

version=${FOVEA_HELM_VERSION:-v4.3.2}
module=helm.sh/helm/${version%%.*}
cache=${FOVEA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fovea-models}
out="$cache/helm-$version/bin"
if [ -x "$out/helm" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
# One build at a time per version: a second caller waits, then finds the binary.
exec 9>"$cache/helm-$version.lock"
flock 9
if [ -x "$out/helm" ]; then echo "$out"; exit 0; fi

fail() { echo "fovea-models: helm build failed at step '$1': $2" >&2; exit 1; }
command -v go >/dev/null || fail "find go" "the Go toolchain is not on PATH"

tmp="$out.partial"
rm -rf "$tmp"; mkdir -p "$tmp"
echo "fovea-models: building helm $version from the Go module proxy (first build only; minutes on 2 cores)" >&2
# helm reports its version from this variable (a plain `go install` would say v4.x-dev).
ld="-s -w -X $module/internal/version.version=$version"
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath -ldflags "$ld" "$module/cmd/helm@$version" \
  || fail "go install" "could not fetch or compile $module/cmd/helm@$version (see the output above)"
[ -x "$tmp/helm" ] || fail "check outputs" "helm was not produced"
mkdir -p "$out"
mv "$tmp/helm" "$out/helm"
rm -rf "$tmp"
echo "$out"
