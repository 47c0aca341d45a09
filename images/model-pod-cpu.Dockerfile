# Model-server pods without a GPU (kind, CPU nodes): `fovea-models model-pod`
# with torch's CPU-only wheels and the in-process adapters (transformers,
# ultralytics, plain torch). scripts/build-images.sh picks the base and where
# torch comes from (docs/images.md).
#
#   docker build -f images/model-pod-cpu.Dockerfile -t ghcr.io/fovea-models/model-pod:0.1.0-cpu .
#
# The base is pinned by exact tag; pass --build-arg PYTHON_IMAGE=...@sha256:<digest>
# to pin a digest.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# The build machine's CA bundle (scripts/build-images.sh puts it in the context):
# pip trusts what that machine trusts (a TLS-inspecting proxy's CA, say). Build stage only.
COPY build/images/ca-certificates.crt /etc/ssl/build-ca-certificates.crt
# PYTHONSAFEPATH: the sources in /src have a folder operator/ that would shadow
# the standard library's operator module.
COPY images/constraints.txt /etc/pip-constraints.txt
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/build-ca-certificates.crt \
    PYTHONSAFEPATH=1 PIP_CONSTRAINT=/etc/pip-constraints.txt
# torch and torchvision first, from the CPU-only index: `.[model]` then finds
# them installed and pulls no CUDA wheels. With TORCH_INDEX empty, the base
# brings them (Debian's CPU builds, scripts/make-base-image.sh torch, where
# PyTorch's index is out of reach) and the venv sees the base's packages.
RUN if [ -n "${TORCH_INDEX}" ]; then \
      python -m venv /opt/fovea \
      && /opt/fovea/bin/pip install --index-url "${TORCH_INDEX}" torch torchvision; \
    else \
      python -m venv --system-site-packages /opt/fovea; \
    fi
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies first, in their own layer: a change to the sources alone
# rebuilds from the COPY below, not from PyPI.
RUN /opt/fovea/bin/python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\\n'.join(project['dependencies'] + project['optional-dependencies']['model']))" >/tmp/requirements.txt \
 && /opt/fovea/bin/pip install -r /tmp/requirements.txt
COPY fovea fovea
COPY domain domain
COPY operator operator
COPY api api
COPY model_pod model_pod
COPY localcluster localcluster
# pip and setuptools leave the venv last: the final stage gets no build tools.
RUN /opt/fovea/bin/pip install ".[model]" \
 && /opt/fovea/bin/python -c "import torch, sys; sys.exit(torch.version.cuda is not None)" \
 && /opt/fovea/bin/fovea-models model-pod --help >/dev/null \
 && /opt/fovea/bin/pip uninstall --quiet --yes pip setuptools

FROM ${PYTHON_IMAGE}
# OpenCV (ultralytics) needs libGL and GLib at import time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 fovea \
 && useradd --system --uid 10001 --gid fovea --create-home --home-dir /home/fovea \
      --shell /usr/sbin/nologin fovea
COPY --from=build /opt/fovea /opt/fovea
# Model caches in the user's home (an emptyDir or a volume in production).
ENV PATH=/opt/fovea/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/fovea/.cache/huggingface \
    YOLO_CONFIG_DIR=/home/fovea/.config/Ultralytics \
    PORT=8080
USER 10001:10001
WORKDIR /home/fovea
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
ENTRYPOINT ["fovea-models"]
CMD ["model-pod"]
