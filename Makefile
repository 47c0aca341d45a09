# The two commands of the README:
#   make run   installs everything (venv, packages, control-plane binaries) and runs
#              the local cluster, the operator and the API on :3001, in the foreground
#   make test  installs the same and runs the whole test suite (lint, types, tests):
#              the unit layer first, then the integration layer
#   make unit  the pure tests only (no control plane, no cluster; under a minute)

VENV    ?= .venv
PY      := $(VENV)/bin/python
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTHON  ?= python3
# Never put the working directory on sys.path: the folder `operator/` would
# shadow the standard library's `operator` (it is importable only as fovea.operator).
export PYTHONSAFEPATH := 1

.PHONY: run test unit integration install binaries helm browser containers lint typecheck pytest bench \
	crds catalog images control-plane-image e2e-images kind-e2e clean

run: install
	$(BIN)/fovea-models up

# The venv is enough for lint, types and the unit layer: they run (and fail fast) before
# the control plane is built.
test: $(STAMP) lint typecheck unit install control-plane-image integration

install: $(STAMP) binaries browser containers

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[model,dev]'
	touch $(STAMP)

# Debian's Chromium for the GPU board's browser test (driven by Playwright from Python;
# never `playwright install`). Installed once; a second run does nothing.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# Builds kube-apiserver, kube-controller-manager, kube-scheduler and etcd once per
# version into ~/.cache/fovea-models (a second run builds nothing), and the
# container node's kubelet and pause binary.
binaries:
	@localcluster/gobuild/build.sh >/dev/null
	@localcluster/gobuild/build.sh kubelet >/dev/null
	@localcluster/gobuild/build.sh pause >/dev/null
	@scripts/build-helm.sh >/dev/null

# helm alone (the chart's tests: tests/manifests/test_chart.py, test_upgrade.py), built from
# the Go module proxy once per version into the same cache (scripts/build-helm.sh).
helm:
	@scripts/build-helm.sh

# Debian's Docker engine (image builds), containerd, runc and CNI plugins (the local
# cluster's container node) and debootstrap (base images made here when no registry
# answers). Installed once; a second run does nothing.
containers:
	@command -v dockerd >/dev/null && command -v containerd >/dev/null && command -v runc >/dev/null \
	  && command -v debootstrap >/dev/null && command -v iptables >/dev/null && test -x /usr/lib/cni/bridge \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      docker.io containerd runc containernetworking-plugins iptables debootstrap)

# Layering (.importlinter) is checked on a view shaped like the installed package: the
# folders map into `fovea` through setuptools package-dir, which import-linter cannot follow.
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@rm -rf build/importlint && mkdir -p build/importlint/fovea
	@for f in fovea/*; do case $$f in *__pycache__) ;; *) ln -s ../../../$$f build/importlint/fovea/;; esac; done
	@for d in domain operator api model_pod localcluster; do ln -s ../../../$$d build/importlint/fovea/$$d; done
	cd build/importlint && PYTHONPATH=. ../../$(BIN)/lint-imports ../../.importlinter --no-cache

# The folders map into the `fovea` namespace through setuptools package-dir, which
# mypy cannot follow; it checks a symlinked view of the same files instead.
typecheck:
	@rm -rf build/typecheck && mkdir -p build/typecheck/fovea
	@for f in fovea/*.py fovea/usercli; do ln -s ../../../$$f build/typecheck/fovea/; done
	@for d in domain operator api model_pod localcluster; do ln -s ../../../$$d build/typecheck/fovea/$$d; done
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p fovea

# The two layers of the suite: `integration` marks every test that needs the control
# plane (a cluster, or its binaries such as the pinned kubectl; tests/conftest.py).
# The unit layer runs on every core (pytest-xdist): its tests share no state.
unit: $(STAMP)
	$(BIN)/pytest -m 'not integration' -n auto

# The integration layer runs on INTEGRATION_WORKERS pytest-xdist workers, each with a
# local cluster of its own (tests/conftest.py), so tests on different workers share no
# state; `--dist loadfile` keeps a file's tests on one worker (a module's fixtures start
# once; the container node's tests: one container node per machine). Not `loadgroup`:
# with pytest 9 xdist 3.8's xdist_group marks group nothing (it sets the old `_nodeid`).
# Against $$FOVEA_TEST_KUBECONFIG (one cluster for all) it runs serially.
# The slowest tests are listed at the end of every run: where the suite's time goes.
# One worker by default: with three, two tests fail under the load on a 2-core machine
# (the stack's stop in tests/fovea/test_stack.py outlasts 90 s; a warm switch's route
# answered by the model just left): `make integration INTEGRATION_WORKERS=3` is 12 min.
INTEGRATION_WORKERS ?= 1
integration: install control-plane-image
	$(BIN)/pytest -m integration --durations=30 --dist loadfile \
	  -n $(if $(FOVEA_TEST_KUBECONFIG),0,$(INTEGRATION_WORKERS))

pytest:
	$(BIN)/pytest

bench: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/cluster.py
	$(PY) bench/placement.py
	$(PY) bench/reconcile.py
	$(PY) bench/api.py
	$(PY) bench/model_load.py
	$(PY) bench/weights.py
	$(PY) bench/faults.py
	$(PY) bench/cli.py
	$(PY) bench/board.py
	$(PY) bench/tenants.py
	$(PY) bench/container_node.py
	$(PY) bench/gateway.py
	$(PY) bench/switch.py

crds:
	$(BIN)/fovea-models crds --write

# Regenerate the ModelCatalog manifests from their models.yaml sources.
catalog: install
	$(PY) scripts/generate_catalogs.py

# Container images: the control plane and the CPU model server. scripts/docker-engine.sh
# starts Debian's dockerd when no engine answers; scripts/build-images.sh makes the bases
# from Debian's packages when no registry serves the official ones. docs/images.md
images: containers
	scripts/docker-engine.sh
	scripts/build-images.sh control-plane model-pod-cpu

# What `make test` runs on the container node (tests/localcluster/test_container_node.py).
control-plane-image: containers
	scripts/docker-engine.sh
	scripts/build-images.sh control-plane

# The model-pod image (several GB with torch): built, then a model pod from it runs
# on the local cluster's container node until Ready.
e2e-images: install
	scripts/docker-engine.sh
	scripts/build-images.sh model-pod-cpu
	$(PY) scripts/e2e_images.py

# A kind cluster with the images loaded, the kind overlay applied, and the e2e suite.
kind-e2e: install
	scripts/kind-e2e.sh

clean:
	rm -rf build $(VENV) .mypy_cache .ruff_cache .pytest_cache
