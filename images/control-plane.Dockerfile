# syntax=docker/dockerfile:1
#
# The control plane: `fovea-models operator` and `fovea-models api` (one image,
# two Deployments). The package without its [model] extra: no torch.
#
#   docker build -f images/control-plane.Dockerfile -t ghcr.io/fovea-models/control-plane:0.1.0 .
#
# (scripts/build-images.sh builds every image with the tags the manifests pin.)
# The base is pinned by exact tag; to pin the digest your registry serves,
# pass --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/fovea
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fovea fovea
COPY domain domain
COPY operator operator
COPY api api
COPY model_pod model_pod
COPY localcluster localcluster
# A control-plane image that pulled in torch would be ten times its size: fail the build.
RUN /opt/fovea/bin/pip install . \
 && /opt/fovea/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
 && /opt/fovea/bin/fovea-models operator --help >/dev/null \
 && /opt/fovea/bin/fovea-models api --help >/dev/null

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 fovea \
 && useradd --system --uid 10001 --gid fovea --create-home --home-dir /home/fovea \
      --shell /usr/sbin/nologin fovea
COPY --from=build /opt/fovea /opt/fovea
ENV PATH=/opt/fovea/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8080
USER 10001:10001
WORKDIR /home/fovea
# The operator's liveness endpoint and the API both listen on $PORT
# (the manifests set 8080 for the operator and 3001 for the API).
EXPOSE 8080 3001
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
ENTRYPOINT ["fovea-models"]
CMD ["--help"]
