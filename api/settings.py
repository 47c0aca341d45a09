"""Settings of the REST API process, read once from the environment (FOVEA_API_*)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fovea.domain.constants import DEFAULT_CATALOG_NAME
from fovea.domain.quota import Quota, default_quota, parse_gib


class Settings(BaseSettings):
    """Everything the API needs to know; CLI flags override the environment."""

    model_config = SettingsConfigDict(env_prefix="FOVEA_API_", extra="ignore")

    # Loopback unless told: the manifests pass --host=0.0.0.0 for the pod network,
    # where the token and the NetworkPolicies guard it (docs/security.md).
    host: str = "127.0.0.1"
    port: int = Field(default=3001, ge=1, le=65535)
    namespace: str = Field(default="default", min_length=1)
    catalog: str = Field(default=DEFAULT_CATALOG_NAME, min_length=1)
    cluster_wide: bool = Field(
        default=True,
        description="Read the ModelSelections of every namespace (needs the API's ClusterRole "
        "fovea-models-api-selections), so /validate and /status see what other namespaces "
        "hold; false: this namespace only, and /validate says it cannot see the others",
    )
    kubeconfig: str | None = Field(
        default=None, description="Kubeconfig path; else $KUBECONFIG, else in-cluster"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty turns CORS off"
    )
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token required on mutating routes; unset means none"
    )
    max_wait_seconds: float = Field(default=600.0, gt=0, description="Upper bound of ?wait=")
    # A watch is re-opened by the server after this long; the client read timeout is a bit
    # longer, so a dead connection is noticed even when no FIN ever arrives.
    watch_timeout_seconds: int = Field(default=60, ge=1)
    reconnect_max_backoff_seconds: float = Field(default=5.0, gt=0)
    stale_read_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long reads keep answering from the last synced view once the API "
        "server is lost (with X-Fovea-Stale-Seconds); then 503. 0: 503 at once",
    )
    # Requests to the API server per second, and the burst above it (client-go's QPS and
    # Burst; docs/configuration.md says what they cost). 0: no limit.
    client_qps: float = Field(default=50.0, ge=0, description="Requests per second to Kubernetes")
    client_burst: int = Field(default=100, ge=1, description="Requests above client_qps at once")
    write_retries: int = Field(
        default=5, ge=1, description="Attempts of a create that loses a race to another create"
    )
    request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one write to the API server"
    )
    # The inference route (docs/inference.md).
    queue_length: int = Field(
        default=256,
        ge=0,
        description="Requests a task may hold while its model is not Ready; one more answers "
        "429 with Retry-After",
    )
    hold_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Longest a request is held for a model that is not Ready (then 503); unset: "
        "3x the model's measured load time, at least min_hold_seconds, at most max_wait_seconds",
    )
    min_hold_seconds: float = Field(
        default=60.0, gt=0, description="The least a request is held when hold_seconds is unset"
    )
    predict_timeout_seconds: float = Field(
        default=300.0, gt=0, description="Longest wait for a model pod's answer to start"
    )
    connect_timeout_seconds: float = Field(
        default=2.0, gt=0, description="Longest wait for a model pod to accept a connection"
    )
    # The operator's cluster default quota (docs/tenants.md), one setting read by both
    # processes under the operator's names: /validate and the what-if plan admit a
    # namespace without quota annotations as the operator does.
    default_gpu_memory_quota: str = Field(
        default="",
        validation_alias=AliasChoices(
            "FOVEA_OPERATOR_DEFAULT_GPU_MEMORY_QUOTA", "default_gpu_memory_quota"
        ),
        description="The operator's FOVEA_OPERATOR_DEFAULT_GPU_MEMORY_QUOTA: GiB or a quantity; "
        "empty: unlimited",
    )
    default_max_priority: int | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "FOVEA_OPERATOR_DEFAULT_MAX_PRIORITY", "default_max_priority"
        ),
        description="The operator's FOVEA_OPERATOR_DEFAULT_MAX_PRIORITY; unset: no ceiling",
    )

    # The operator's warm switches (docs/configuration.md), read by both processes too: with
    # them on, /validate and the what-if plan count a warm pod at its group's memory.
    warm_switches: bool = Field(
        default=False,
        validation_alias=AliasChoices("FOVEA_OPERATOR_WARM_SWITCHES", "warm_switches"),
        description="The operator's FOVEA_OPERATOR_WARM_SWITCHES",
    )

    @field_validator("default_gpu_memory_quota")
    @classmethod
    def _quota_parses(cls, value: str) -> str:
        if value:
            parse_gib(value)  # ValueError: the setting names what does not parse
        return value

    def default_quota(self) -> Quota:
        """The operator's cluster default quota, as the operator reads it."""
        return default_quota(self.default_gpu_memory_quota, self.default_max_priority)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use only."""
    return Settings()
