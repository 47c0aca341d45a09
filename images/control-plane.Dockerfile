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
# The build machine's CA bundle (scripts/build-images.sh puts it in the context):
# pip trusts what that machine trusts (a TLS-inspecting proxy's CA, say). Build stage only.
COPY build/images/ca-certificates.crt /etc/ssl/build-ca-certificates.crt
# PYTHONSAFEPATH: the sources in /src have a folder operator/ that would shadow
# the standard library's operator module.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/build-ca-certificates.crt \
    PYTHONSAFEPATH=1
RUN python -m venv /opt/fovea
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies first, in their own layer: a change to the sources alone
# rebuilds from the COPY below, not from PyPI.
RUN /opt/fovea/bin/python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\\n'.join(project['dependencies']))" >/tmp/requirements.txt \
 && /opt/fovea/bin/pip install -r /tmp/requirements.txt
COPY fovea fovea
COPY domain domain
COPY operator operator
COPY api api
COPY model_pod model_pod
COPY localcluster localcluster
# A control-plane image that pulled in torch would be ten times its size: fail the build.
# pip and setuptools leave the venv last: the final stage gets no build tools.
RUN /opt/fovea/bin/pip install . \
 && /opt/fovea/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
 && /opt/fovea/bin/fovea-models operator --help >/dev/null \
 && /opt/fovea/bin/fovea-models api --help >/dev/null \
 && /opt/fovea/bin/pip uninstall --quiet --yes pip setuptools

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
