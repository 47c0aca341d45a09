"""The weights part of a model pod: the `fetch-weights` init container, the cache volume,
a `pvc://` source's claim, and where the model container finds the weights.

Pure, like `fovea.operator.podspec` (which calls `add_weights` before it hashes the
spec). Why an init container rather than a fetch Job: docs/weights.md. The operator
never reads the credentials Secret: the pod names it (`envFrom`), the kubelet reads it,
and a missing Secret shows as the init container's CreateContainerConfigError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fovea.domain import constants as c
from fovea.domain.resources import (
    CatalogSpec,
    ModelOption,
    WeightsCache,
    WeightsCacheKind,
    WeightsCredentials,
)
from fovea.domain.weights import (
    ENV_WEIGHTS_PATH,
    PVC_MOUNT_ROOT,
    WEIGHTS_MOUNT,
    cache_key,
    parse_weights_uri,
)

FETCH_CONTAINER = "fetch-weights"
CACHE_VOLUME = "weights-cache"
SOURCE_VOLUME = "weights-source"
# The fetch streams to disk: it needs little of the node (the pod's requests are the
# larger of these and the model container's, so the planner's figures stand).
FETCH_REQUESTS = {"cpu": "100m", "memory": "256Mi"}
FETCH_LIMITS = {"memory": "1Gi"}
# The project's images run as this uid/gid: a PVC cache is made group-writable for it
# (fsGroup); a node cache's host directory must be writable by it (docs/weights.md).
IMAGE_GID = 10001
SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class WeightsSettings:
    """A catalog's weights settings: its cache, its credentials Secret, the fetch's env."""

    cache: WeightsCache = field(default_factory=WeightsCache)
    credentials: WeightsCredentials | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, catalog: CatalogSpec) -> WeightsSettings:
        return cls(catalog.weights_cache, catalog.weights_credentials, dict(catalog.weights_env))


def weights_path(option: ModelOption) -> str | None:
    """Where the model container finds the option's weights (None: no `weights:`)."""
    if option.weights is None:
        return None
    key = cache_key(parse_weights_uri(option.weights), option.weights_sha256)
    return f"{WEIGHTS_MOUNT}/{key}"


def fetch_command(option: ModelOption, cache: WeightsCache) -> list[str]:
    """The init container's command line (`fovea-models fetch-weights`)."""
    assert option.weights is not None
    command = ["fovea-models", "fetch-weights", "--source", option.weights]
    if option.weights_sha256:
        command += ["--sha256", option.weights_sha256]
    return [*command, "--cache", WEIGHTS_MOUNT, "--cache-size-gb", f"{cache.size_gb:g}"]


def volumes(option: ModelOption, settings: WeightsSettings) -> list[dict[str, Any]]:
    """The cache volume, and the read-only claim of a `pvc://` source."""
    assert option.weights is not None
    cache = settings.cache
    if cache.kind == WeightsCacheKind.SHARED:
        store: dict[str, Any] = {"persistentVolumeClaim": {"claimName": cache.claim}}
    else:
        store = {"hostPath": {"path": cache.path, "type": "DirectoryOrCreate"}}
    out = [{"name": CACHE_VOLUME, **store}]
    source = parse_weights_uri(option.weights)
    if source.scheme == "pvc":
        claim = {"claimName": source.location, "readOnly": True}
        out.append({"name": SOURCE_VOLUME, "persistentVolumeClaim": claim})
    return out


def fetch_container(
    option: ModelOption, settings: WeightsSettings, image: str, identity_env: list[dict[str, Any]]
) -> dict[str, Any]:
    """The `fetch-weights` init container: fills the cache entry, reports progress, exits."""
    assert option.weights is not None
    mounts: list[dict[str, Any]] = [{"name": CACHE_VOLUME, "mountPath": WEIGHTS_MOUNT}]
    source = parse_weights_uri(option.weights)
    if source.scheme == "pvc":
        mounts.append(
            {
                "name": SOURCE_VOLUME,
                "mountPath": f"{PVC_MOUNT_ROOT}/{source.location}",
                "readOnly": True,
            }
        )
    env = [*identity_env, *({"name": k, "value": v} for k, v in sorted(settings.env.items()))]
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": image,
        "command": fetch_command(option, settings.cache),
        "env": env,
        "volumeMounts": mounts,
        "securityContext": dict(SECURITY_CONTEXT),
        "resources": {"requests": dict(FETCH_REQUESTS), "limits": dict(FETCH_LIMITS)},
    }
    if settings.credentials is not None:
        # Not optional: a missing Secret must stop the pod visibly (CreateContainerConfigError).
        container["envFrom"] = [{"secretRef": {"name": settings.credentials.secret}}]
    return container


_IDENTITY = (c.ENV_SELECTION, c.ENV_NAMESPACE, c.ENV_POD_NAME)


def add_weights(
    spec: dict[str, Any], option: ModelOption, settings: WeightsSettings, image: str
) -> None:
    """Give a model pod's spec its weights (in place): nothing when the option has none."""
    if option.weights is None:
        return
    model = spec["containers"][0]
    identity = [dict(e) for e in model["env"] if e["name"] in _IDENTITY]
    spec["initContainers"] = [fetch_container(option, settings, image, identity)]
    if settings.cache.kind == WeightsCacheKind.SHARED:
        spec["securityContext"] = {**spec.get("securityContext", {}), "fsGroup": IMAGE_GID}
    spec["volumes"] = [*spec.get("volumes", []), *volumes(option, settings)]
    model["env"] = [*model["env"], {"name": ENV_WEIGHTS_PATH, "value": weights_path(option)}]
    mount = {"name": CACHE_VOLUME, "mountPath": WEIGHTS_MOUNT, "readOnly": True}
    model["volumeMounts"] = [*model.get("volumeMounts", []), mount]
