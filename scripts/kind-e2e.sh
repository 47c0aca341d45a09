#!/usr/bin/env bash
# fovea-models on kind, end to end: create a kind cluster, build the images and
# load them into it, run the manifest and in-cluster tests against it, then
# install the kind overlay for real (the API on localhost:3001).
#
#   scripts/kind-e2e.sh            # needs docker, kind, kubectl and the project's .venv
#
# Environment:
#   CLUSTER=fovea-e2e   kind cluster name
#   KEEP=1              keep the cluster afterwards (default: delete it on success)
#   REUSE=1             use an existing cluster of that name instead of creating one
#
# The tests are the same ones `make test` runs against the local cluster
# (tests/manifests): FOVEA_TEST_KUBECONFIG points them at kind. The in-cluster
# test installs the kind overlay into its own namespace, reaches the API with
# `kubectl port-forward` and selects a demo model until it is Ready.
set -euo pipefail

cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-fovea-e2e}
PYTHON=${PYTHON:-.venv/bin/python}

for tool in docker kind kubectl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "kind-e2e: '$tool' is not installed here; this script needs docker, kind and kubectl." >&2
        exit 2
    fi
done
if ! docker info >/dev/null 2>&1; then
    echo "kind-e2e: docker cannot reach a container engine here; kind needs one." >&2
    exit 2
fi
if [[ ! -x "$PYTHON" ]]; then
    echo "kind-e2e: $PYTHON not found: run 'make install' first." >&2
    exit 2
fi

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
REGISTRY=ghcr.io/fovea-models
KUBECONFIG_FILE=$(mktemp "${TMPDIR:-/tmp}/kind-$CLUSTER.XXXXXX")
trap 'rm -f "$KUBECONFIG_FILE"' EXIT

step() { printf '\n== kind-e2e: %s\n' "$*"; }

if [[ "${REUSE:-0}" == 1 ]] && kind get clusters | grep -qx "$CLUSTER"; then
    step "reusing kind cluster $CLUSTER"
else
    step "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --config manifests/overlays/kind/kind-config.yaml --wait 120s
fi
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE"
export KUBECONFIG=$KUBECONFIG_FILE

step "building images (control plane, CPU model server)"
VERSION=$VERSION REGISTRY=$REGISTRY scripts/build-images.sh control-plane model-pod-cpu

step "loading images into kind"
kind load docker-image --name "$CLUSTER" \
    "$REGISTRY/control-plane:$VERSION" "$REGISTRY/model-pod:$VERSION-cpu"

step "tests/manifests against kind"
FOVEA_TEST_KUBECONFIG=$KUBECONFIG_FILE "$PYTHON" -m pytest tests/manifests -p no:cacheprovider

step "installing the kind overlay into fovea-system"
# The dry-run test may have created fovea-system and deleted it again.
kubectl wait --for=delete namespace/fovea-system --timeout=180s
kubectl apply --server-side -k manifests/crd
kubectl wait --for=condition=Established --timeout=60s \
    crd/modelcatalogs.fovea.dev crd/modelselections.fovea.dev
kubectl apply --server-side -k manifests/overlays/kind
kubectl -n fovea-system rollout status deployment/fovea-models-operator --timeout=180s
kubectl -n fovea-system rollout status deployment/fovea-models-api --timeout=180s

step "select through the API on localhost:3001 (kind maps the NodePort), with the install's token"
TOKEN=$(kubectl -n fovea-system get secret fovea-models-api-token -o jsonpath='{.data.token}' | base64 -d)
curl --fail-with-body -sS -X POST -H "Authorization: Bearer $TOKEN" \
    'http://127.0.0.1:3001/api/models/select?task_type=object_tracking&model_name=mlp-tracker&wait=300'
echo
curl --fail-with-body -sS http://127.0.0.1:3001/api/models/status
echo
kubectl -n fovea-system get modelselections,pods

if [[ "${KEEP:-0}" == 1 ]]; then
    step "done; the cluster stays (kind delete cluster --name $CLUSTER)"
else
    step "done; deleting the cluster (KEEP=1 keeps it)"
    kind delete cluster --name "$CLUSTER"
fi
