# Model-server pods on NVIDIA GPUs: `fovea-models model-pod` with CUDA torch.
# The nvidia/cuda runtime base brings the CUDA user-space libraries and the
# NVIDIA_* settings the NVIDIA container toolkit reads; the driver comes from
# the node.
#
#   docker build -f images/model-pod-cuda.Dockerfile -t ghcr.io/fovea-models/model-pod:0.1.0-cuda .
#
# Options served by an engine server (framework sglang or vllm) need the
# engine in the same environment: build a variant with
#   --build-arg ENGINES="vllm"        (or "sglang[all]")
# and name that image in the catalog option's `image` field.
# Bases are pinned by exact tag; pass --build-arg CUDA_IMAGE=...@sha256:<digest>
# to pin a digest. TORCH_INDEX must match the base's CUDA major version.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG ENGINES=""
# The build machine's CA bundle (scripts/build-images.sh puts it in the context):
# pip trusts what that machine trusts (a TLS-inspecting proxy's CA, say). Build stage only.
COPY build/images/ca-certificates.crt /etc/ssl/build-ca-certificates.crt
# PYTHONSAFEPATH: the sources in /src have a folder operator/ that would shadow
# the standard library's operator module.
COPY images/constraints.txt /etc/pip-constraints.txt
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/build-ca-certificates.crt \
    PYTHONSAFEPATH=1 PIP_CONSTRAINT=/etc/pip-constraints.txt DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/fovea
RUN /opt/fovea/bin/pip install --index-url "${TORCH_INDEX}" torch torchvision
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
 && if [ -n "${ENGINES}" ]; then /opt/fovea/bin/pip install ${ENGINES}; fi \
 && /opt/fovea/bin/python -c "import torch, sys; sys.exit(torch.version.cuda is None)" \
 && /opt/fovea/bin/fovea-models model-pod --help >/dev/null \
 && /opt/fovea/bin/pip uninstall --quiet --yes pip setuptools

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 fovea \
 && useradd --system --uid 10001 --gid fovea --create-home --home-dir /home/fovea \
      --shell /usr/sbin/nologin fovea
COPY --from=build /opt/fovea /opt/fovea
ENV PATH=/opt/fovea/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/fovea/.cache/huggingface \
    YOLO_CONFIG_DIR=/home/fovea/.config/Ultralytics \
    PORT=8080
USER 10001:10001
WORKDIR /home/fovea
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
ENTRYPOINT ["fovea-models"]
CMD ["model-pod"]
