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
#   PYTHON_IMAGE  the Python base (default: scripts/make-base-image.sh python, the
#              official python:3.11.13-slim-bookworm where a registry serves it, else
#              one made here from Debian's packages)
#   TORCH_INDEX   where model-pod-cpu gets torch (default: PyTorch's CPU index when
#              this machine reaches it; else Debian's CPU torch in the base made by
#              scripts/make-base-image.sh torch, or in the PYTHON_IMAGE you give)
#
# Each image's size and build time are printed when it is built.
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

# pip in the build stages trusts what this machine trusts (its CA bundle, copied
# into the build context: build/images/ca-certificates.crt, never into a final stage).
ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
[[ -s "$ca_bundle" ]] || ca_bundle=$(python3 -c 'import ssl; print(ssl.get_default_verify_paths().openssl_cafile)')
mkdir -p build/images
cp "$ca_bundle" build/images/ca-certificates.crt

# The build arguments of one image: its base, made here when no registry serves it.
build_args() {
    local python_image=${PYTHON_IMAGE:-}
    case "$1" in
        control-plane)
            [[ -n "$python_image" ]] || python_image=$(scripts/make-base-image.sh python)
            echo "--build-arg PYTHON_IMAGE=$python_image"
            ;;
        model-pod-cpu)
            local index=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}
            if [[ -n "$index" ]] && ! curl -fsS -m 20 -o /dev/null "$index/" 2>/dev/null; then
                echo "build-images: $index is out of reach: torch comes with the base (Debian's CPU torch unless PYTHON_IMAGE is given)" >&2
                index=""
            fi
            if [[ -z "$index" && -z "$python_image" ]]; then
                python_image=$(scripts/make-base-image.sh torch)
            elif [[ -z "$python_image" ]]; then
                python_image=$(scripts/make-base-image.sh python)
            fi
            echo "--build-arg PYTHON_IMAGE=$python_image --build-arg TORCH_INDEX=$index"
            ;;
        model-pod-cuda)
            local cuda_image=${CUDA_IMAGE:-nvidia/cuda:13.0.1-runtime-ubuntu24.04}
            if ! "$DOCKER" image inspect "$cuda_image" >/dev/null 2>&1 \
                && ! timeout 300 "$DOCKER" pull --quiet "$cuda_image" >/dev/null 2>&1; then
                echo "build-images: no registry serves $cuda_image here, and it cannot be" >&2
                echo "  made from Debian's packages: build model-pod-cuda where a registry is reachable." >&2
                return 2
            fi
            echo "--build-arg CUDA_IMAGE=$cuda_image"
            ;;
    esac
}

for image in "${images[@]}"; do
    echo "build-images: ${TAG[$image]} from ${DOCKERFILE[$image]}"
    started=$SECONDS
    args=$(build_args "$image") || exit $?
    # shellcheck disable=SC2086  # the arguments are words without spaces
    "$DOCKER" build $args --file "${DOCKERFILE[$image]}" --tag "${TAG[$image]}" .
    size=$("$DOCKER" image inspect --format '{{.Size}}' "${TAG[$image]}")
    echo "build-images: ${TAG[$image]}: $((size / 1000000)) MB, built in $((SECONDS - started)) s"
    if [[ "${PUSH:-0}" == 1 ]]; then
        "$DOCKER" push "${TAG[$image]}"
    fi
done
echo "build-images: built ${images[*]} (tag $VERSION)"
