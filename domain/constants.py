"""The one vocabulary of API group, kinds, labels, annotations and env names."""

from typing import Final

GROUP: Final = "fovea.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

CATALOG_KIND: Final = "ModelCatalog"
CATALOG_PLURAL: Final = "modelcatalogs"
SELECTION_KIND: Final = "ModelSelection"
SELECTION_PLURAL: Final = "modelselections"
DEFAULT_CATALOG_NAME: Final = "default"

# Labels on everything the operator creates.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "fovea-models"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
COMPONENT_MODEL_POD: Final = "model-server"
LABEL_SELECTION: Final = f"{GROUP}/selection"
LABEL_TASK: Final = f"{GROUP}/task"
LABEL_MODEL: Final = f"{GROUP}/model"

# Annotations.
ANNOTATION_SIMULATED_GPU: Final = f"{GROUP}/simulated-gpu"
ANNOTATION_LOCAL_PORT: Final = f"{GROUP}/local-port"
ANNOTATION_PLANNED_GPU: Final = f"{GROUP}/gpu-index"
ANNOTATION_PLANNED_NODE: Final = f"{GROUP}/node"
ANNOTATION_VRAM_GIB: Final = f"{GROUP}/vram-gib"
ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
# On a Namespace, set by the platform team (fovea.domain.quota).
ANNOTATION_GPU_MEMORY_QUOTA: Final = f"{GROUP}/gpu-memory-quota"
ANNOTATION_MAX_PRIORITY: Final = f"{GROUP}/max-priority"

# Node labels from NVIDIA GPU feature discovery.
NODE_LABEL_GPU_MEMORY_MIB: Final = "nvidia.com/gpu.memory"
NODE_LABEL_GPU_COUNT: Final = "nvidia.com/gpu.count"
NODE_LABEL_GPU_PRODUCT: Final = "nvidia.com/gpu.product"
NODE_LABEL_GPU_REPLICAS: Final = "nvidia.com/gpu.replicas"  # time-slicing replicas per GPU
NODE_LABEL_SIMULATED: Final = f"{GROUP}/simulated-gpu"
RESOURCE_GPU: Final = "nvidia.com/gpu"
RESOURCE_HAMI_GPUMEM: Final = "nvidia.com/gpumem"
TAINT_GPU: Final = "nvidia.com/gpu"
# A node that pulls no images (no registry reachable, such as the local cluster's
# container node): it runs only what `status.images` lists. Model pods tolerate it
# when pinned, and the planner sends one there only if the node holds its images.
TAINT_PRELOADED_IMAGES: Final = f"{GROUP}/preloaded-images"

# Environment of a model-server process (set by the operator's pod spec).
ENV_TASK: Final = "FOVEA_TASK"
ENV_MODEL: Final = "FOVEA_MODEL"
ENV_MODEL_ID: Final = "FOVEA_MODEL_ID"
ENV_FRAMEWORK: Final = "FOVEA_FRAMEWORK"
ENV_DEVICE: Final = "FOVEA_DEVICE"
ENV_SELECTION: Final = "FOVEA_SELECTION"
ENV_NAMESPACE: Final = "FOVEA_NAMESPACE"
ENV_POD_NAME: Final = "FOVEA_POD_NAME"
ENV_DECLARED_VRAM_GB: Final = "FOVEA_DECLARED_VRAM_GB"
ENV_BATCH_SIZE: Final = "FOVEA_BATCH_SIZE"
ENV_ALLOW_RANDOM_WEIGHTS: Final = "FOVEA_ALLOW_RANDOM_WEIGHTS"
ENV_ARCHITECTURE: Final = "FOVEA_ARCHITECTURE"
ENV_PORT: Final = "PORT"
# The address a pod process listens on (the local cluster's node agent sets it to
# the pod's own address, beside PORT).
ENV_HOST: Final = "HOST"
# The model pod's drain on SIGTERM (model_pod/drain.py): how long it keeps answering
# while its endpoints go, capped by the pod's terminationGracePeriodSeconds (which
# the operator passes as FOVEA_TERMINATION_GRACE_SECONDS) less a margin.
ENV_DRAIN_SECONDS: Final = "FOVEA_DRAIN_SECONDS"
ENV_TERMINATION_GRACE_SECONDS: Final = "FOVEA_TERMINATION_GRACE_SECONDS"
# Set by the local cluster's node agent on simulated GPU nodes.
ENV_SIMULATED_GPU: Final = "FOVEA_SIMULATED_GPU"
MODEL_POD_PORT: Final = 8080
# The largest request body a model pod reads; the API refuses a bigger one (413) before
# forwarding anything to it.
MAX_PREDICT_BODY_BYTES: Final = 32 * 1024 * 1024

# The local cluster (fovea.localcluster): its settings, and how it marks what it owns.
ENV_STATE_DIR: Final = "FOVEA_STATE_DIR"  # where `cluster up` keeps etcd, PKI, logs
ENV_CACHE_DIR: Final = "FOVEA_CACHE"  # where the control-plane binaries are built
ENV_K8S_BIN_DIR: Final = "FOVEA_K8S_BIN_DIR"  # use prebuilt binaries from this directory
ENV_TEST_KUBECONFIG: Final = "FOVEA_TEST_KUBECONFIG"  # run the tests against this cluster
ENV_KUBECONFIG: Final = "KUBECONFIG"
LABEL_LOCAL_NODE: Final = f"{GROUP}/local-node"  # a Node registered by the local cluster
