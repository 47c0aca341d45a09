#!/usr/bin/env bash
# Build the container images with the tags the manifests pin (manifests/base).
#
#   scripts/build-images.sh [IMAGE...]        IMAGE: control-plane, model-pod-cpu, model-pod-cuda
#                                             (default: all three)
# Environment:
#   REGISTRY   image prefix (default ghcr.io/fovea-models)
#   VERSION    tag (default: the version in pyproject.toml)
#   PUSH=1     push after building
#   DOCKER     the docker-compatible CLI to use (default docker; podman works too)
#
# Exit status: 0 built; 2 no usable container engine here (nothing is built);
# 1 a build failed.
set -euo pipefail

cd "$(dirname "$0")/.."
REGISTRY=${REGISTRY:-ghcr.io/fovea-models}
DOCKER=${DOCKER:-docker}
if [[ -z "${VERSION:-}" ]]; then
    VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
fi

declare -A DOCKERFILE=(
    [control-plane]=images/control-plane.Dockerfile
    [model-pod-cpu]=images/model-pod-cpu.Dockerfile
    [model-pod-cuda]=images/model-pod-cuda.Dockerfile
)
declare -A TAG=(
    [control-plane]="$REGISTRY/control-plane:$VERSION"
    [model-pod-cpu]="$REGISTRY/model-pod:$VERSION-cpu"
    [model-pod-cuda]="$REGISTRY/model-pod:$VERSION-cuda"
)

images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=(control-plane model-pod-cpu model-pod-cuda)
for image in "${images[@]}"; do
    if [[ -z "${DOCKERFILE[$image]:-}" ]]; then
        echo "build-images: unknown image '$image' (known: ${!DOCKERFILE[*]})" >&2
        exit 1
    fi
done

if ! command -v "$DOCKER" >/dev/null 2>&1; then
    echo "build-images: '$DOCKER' is not installed here: no images built." >&2
    echo "  Install Docker (or set DOCKER=podman) and run this again." >&2
    exit 2
fi
if ! engine_error=$("$DOCKER" info 2>&1 >/dev/null); then
    echo "build-images: '$DOCKER' cannot reach a container engine here: no images built." >&2
    echo "  ${engine_error##*$'\n'}" >&2
    exit 2
fi

for image in "${images[@]}"; do
    echo "build-images: ${TAG[$image]} from ${DOCKERFILE[$image]}"
    "$DOCKER" build --file "${DOCKERFILE[$image]}" --tag "${TAG[$image]}" .
    if [[ "${PUSH:-0}" == 1 ]]; then
        "$DOCKER" push "${TAG[$image]}"
    fi
done
echo "build-images: built ${images[*]} (tag $VERSION)"
