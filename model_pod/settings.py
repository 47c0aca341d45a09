"""The model pod's settings: the one place its processes read the environment.

Both processes of a model pod use it: the model server (`fovea-models model-pod`)
and the `fetch-weights` init container. The operator writes the identity variables
into the pod spec (operator/podspec.py); the rest come from the cluster or the image.
Each variable is documented once, in docs/configuration.md ("Model pod").

The identity's values are kept as the strings the pod spec gave: identity.py checks
each one and names the variable in its error, so a mistake in a pod spec ends in one
clear line (and a status that says it) rather than a validation traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fovea.domain import constants as c
from fovea.domain.warm import ENV_KEEP_WARM_SECONDS, ENV_MEMORY_REQUEST_GB, ENV_WARM_OPTIONS
from fovea.domain.weights import ENV_WEIGHTS_PATH

ENV_TRUSTED_WEIGHTS_DIR = "FOVEA_TRUSTED_WEIGHTS_DIR"


class ModelPodSettings(BaseSettings):
    """Every variable a model pod reads, by its own name (no prefix: most are not ours)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # --- the identity (identity.py checks these) ------------------------------------------
    task: str = Field("", alias=c.ENV_TASK)
    model: str = Field("", alias=c.ENV_MODEL)
    model_id: str = Field("", alias=c.ENV_MODEL_ID)
    framework: str = Field("", alias=c.ENV_FRAMEWORK)
    device: str = Field("", alias=c.ENV_DEVICE)
    simulated_gpu: str = Field("", alias=c.ENV_SIMULATED_GPU)
    architecture: str = Field("", alias=c.ENV_ARCHITECTURE)
    allow_random_weights: str = Field("", alias=c.ENV_ALLOW_RANDOM_WEIGHTS)
    batch_size: str = Field("", alias=c.ENV_BATCH_SIZE)
    declared_vram_gb: str = Field("", alias=c.ENV_DECLARED_VRAM_GB)
    weights_path: str = Field("", alias=ENV_WEIGHTS_PATH)
    port: str = Field("", alias=c.ENV_PORT)
    # The address to listen on (the local cluster's node agent sets the pod's own).
    host: str = Field("", alias=c.ENV_HOST)
    # Draining on SIGTERM (drain.py): seconds, as the pod spec gives them.
    drain_seconds: str = Field("", alias=c.ENV_DRAIN_SECONDS)
    termination_grace_seconds: str = Field("", alias=c.ENV_TERMINATION_GRACE_SECONDS)
    # A warm pod (model_pod/warm.py): the options it may switch between (JSON), how long a
    # model it left stays parked, and its memory request (GiB), which parked models share.
    warm_options: str = Field("", alias=ENV_WARM_OPTIONS)
    keep_warm_seconds: str = Field("", alias=ENV_KEEP_WARM_SECONDS)
    memory_request_gb: str = Field("", alias=ENV_MEMORY_REQUEST_GB)
    # Where it reports: its ModelSelection, and as which pod (the pod name, else the hostname).
    namespace: str = Field("", alias=c.ENV_NAMESPACE)
    selection: str = Field("", alias=c.ENV_SELECTION)
    pod_name: str = Field("", alias=c.ENV_POD_NAME)
    hostname: str = Field("", alias="HOSTNAME")

    # --- loading ---------------------------------------------------------------------------
    # Pickled weights (TorchScript, ultralytics .pt) load only from here (adapters/trust.py).
    trusted_weights_dir: str = Field("", alias=ENV_TRUSTED_WEIGHTS_DIR)
    # The devices the container runtime gave the process (measure.py, engine children).
    cuda_visible_devices: str | None = Field(None, alias="CUDA_VISIBLE_DEVICES")

    # --- sources of weights: Hugging Face and S3 -----------------------------------------
    hf_endpoint: str = Field("", alias="HF_ENDPOINT")
    hf_hub_offline: str = Field("", alias="HF_HUB_OFFLINE")
    transformers_offline: str = Field("", alias="TRANSFORMERS_OFFLINE")
    hf_token: SecretStr | None = Field(None, alias="HF_TOKEN")
    aws_endpoint_url_s3: str = Field("", alias="AWS_ENDPOINT_URL_S3")
    aws_endpoint_url: str = Field("", alias="AWS_ENDPOINT_URL")
    aws_region: str = Field("", alias="AWS_REGION")
    aws_default_region: str = Field("", alias="AWS_DEFAULT_REGION")
    aws_access_key_id: str = Field("", alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(None, alias="AWS_SECRET_ACCESS_KEY")
    aws_session_token: SecretStr | None = Field(None, alias="AWS_SESSION_TOKEN")

    def variables(self) -> dict[str, str]:
        """The variables that are set, by name: what identity.py checks, and the sources'
        credentials (the readers take a mapping, so a test can hand them its own)."""
        values: dict[str, str] = {}
        for name, value in self.model_dump(by_alias=True).items():
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if text:
                values[name] = str(text)
        return values


def get_settings() -> ModelPodSettings:
    """The environment as it is now (read on each call: cheap, and the process does not
    change it once started; in-process tests do, between cases)."""
    return ModelPodSettings()


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment for a child process (an inference engine), with `extra` over it:
    the child needs all of it (PATH, HOME, its libraries' variables), not only ours."""
    return {**os.environ, **(extra or {})}


def set_library_defaults(defaults: Mapping[str, str]) -> None:
    """Configure a library that reads its settings from the environment only (ultralytics):
    each variable is set unless the pod spec set it already."""
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
