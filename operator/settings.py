"""The operator's settings, read once from the environment (FOVEA_OPERATOR_*)."""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fovea.domain.dra import DraSharing
from fovea.domain.quota import Quota, default_quota
from fovea.domain.resources import SharingMode
from fovea.operator.images import PROJECT_IMAGES


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FOVEA_OPERATOR_")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty means all"
    )
    model_pod_image: str = "ghcr.io/fovea-models/model-pod:0.1.0"
    model_pod_service_account: str = "fovea-model-pod"
    # The shipped ClusterRole that model pods are bound to, per namespace, by a RoleBinding.
    model_pod_cluster_role: str = "fovea-model-pod"
    # Images a catalog option may name (JSON list): repositories, or prefixes ending in
    # "/" (operator/images.py). model_pod_image always runs. Default: the project's own.
    allowed_images: list[str] = Field(default_factory=lambda: list(PROJECT_IMAGES))
    # How the cluster shares GPUs; it decides pod limits and packing. "auto" (None): `dra`
    # when the cluster has the DeviceClass gpu.nvidia.com with devices, else `timeSliced`.
    sharing_mode: SharingMode | None = None
    # dra mode: the claims' sharing config (the NVIDIA driver's TimeSlicing or MPS).
    dra_sharing: DraSharing = DraSharing.TIME_SLICING
    # A pass runs on every watched change (coalesced over `debounce_seconds`)
    # and at least every `resync_seconds`, so missed events cannot strand state.
    resync_seconds: float = 15.0
    debounce_seconds: float = 0.02
    # The passes read a watch-fed cache (operator/cache.py); each kind is listed afresh
    # every `cache_resync_seconds`, the safety net for an event a watch missed.
    cache_resync_seconds: float = Field(default=300.0, gt=0)
    # Requests to the API server per second, and the burst above it (client-go's QPS and
    # Burst; docs/configuration.md says what they cost the API server). 0: no limit.
    client_qps: float = Field(default=500.0, ge=0)
    client_burst: int = Field(default=1000, ge=1)
    # Leadership: only the holder of this Lease plans and writes.
    lease_name: str = "fovea-models-operator"
    lease_namespace: str = Field(default_factory=lambda: os.environ.get("POD_NAMESPACE", "default"))
    # A standby takes the Lease this long after the leader's last renewal (operator/leader.py):
    # the leader renews every third of it (a PUT), each standby reads it ten times per
    # duration (GETs), so 1.5 s costs the API server 2 writes and ~7 reads per second.
    lease_seconds: float = Field(default=1.5, gt=0)
    identity: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    liveness_port: int = 0  # 0: no liveness endpoint
    metrics_port: int = 0  # 0: no Prometheus endpoint (write failures, quotas)
    # Tenants (docs/tenants.md): the quota of a namespace without the
    # fovea.dev/gpu-memory-quota or fovea.dev/max-priority annotation.
    # "" / None: unlimited. A bare number is GiB ("40"), else a quantity ("40Gi").
    default_gpu_memory_quota: str = ""
    # Warm switches (docs/architecture.md): a selection's pod serves every option of its
    # task's warm group, switching in place; the model it leaves stays parked this long.
    warm_switches: bool = False
    keep_warm_seconds: float = Field(600.0, ge=0)
    default_max_priority: int | None = None

    @field_validator("sharing_mode", mode="before")
    @classmethod
    def _auto(cls, value: object) -> object:
        return None if value in ("", "auto") else value

    def default_quota(self) -> Quota:
        """The cluster default quota (ValueError if the setting does not parse)."""
        return default_quota(self.default_gpu_memory_quota, self.default_max_priority)


# Command-line flags (`fovea-models operator -n NS`), which win over the environment.
_flags: dict[str, object] = {}


def set_flags(**flags: object) -> None:
    """Set command-line flags before the first `get_settings` (operator/main.py)."""
    _flags.update(flags)
    get_settings.cache_clear()


@lru_cache
def get_settings() -> OperatorSettings:
    return OperatorSettings.model_validate(_flags)
