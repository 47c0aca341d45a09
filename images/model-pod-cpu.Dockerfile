# syntax=docker/dockerfile:1
#
# Model-server pods without a GPU (kind, CPU nodes): `fovea-models model-pod`
# with torch's CPU-only wheels and the in-process adapters (transformers,
# ultralytics, plain torch).
#
#   docker build -f images/model-pod-cpu.Dockerfile -t ghcr.io/fovea-models/model-pod:0.1.0-cpu .
#
# The base is pinned by exact tag; pass --build-arg PYTHON_IMAGE=...@sha256:<digest>
# to pin a digest.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/fovea
# torch and torchvision first, from the CPU-only index: `.[model]` then finds
# them installed and pulls no CUDA wheels.
RUN /opt/fovea/bin/pip install --index-url "${TORCH_INDEX}" torch torchvision
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fovea fovea
COPY domain domain
COPY operator operator
COPY api api
COPY model_pod model_pod
COPY localcluster localcluster
RUN /opt/fovea/bin/pip install ".[model]" \
 && /opt/fovea/bin/python -c "import torch, sys; sys.exit(torch.version.cuda is not None)" \
 && /opt/fovea/bin/fovea-models model-pod --help >/dev/null

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
