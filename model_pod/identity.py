"""Who this model-server process is: read once from the environment the pod spec sets.

Every setting is checked here, with a message that names the variable, so a
mistake in a pod spec ends in one clear line rather than a traceback later.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from fovea.domain import constants as c
from fovea.domain.resources import Framework
from fovea.domain.warm import (
    DEFAULT_KEEP_WARM_SECONDS,
    ENV_KEEP_WARM_SECONDS,
    ENV_MEMORY_REQUEST_GB,
    ENV_WARM_OPTIONS,
    WarmOption,
    parse_warm_options,
)
from fovea.domain.weights import ENV_WEIGHTS_PATH
from fovea.model_pod.adapters import ENGINE_FRAMEWORKS, IN_PROCESS_FRAMEWORKS
from fovea.model_pod.adapters.base import ModelSpec, env_flag
from fovea.model_pod.drain import DEFAULT_DRAIN_SECONDS, DEFAULT_GRACE_SECONDS, drain_period
from fovea.model_pod.settings import get_settings

ALL_ADDRESSES = "0.0.0.0"
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class IdentityError(ValueError):
    """The environment does not describe a model this process can serve."""


@dataclass(frozen=True)
class Identity:
    """The model, where it should run, and which ModelSelection to report to."""

    spec: ModelSpec
    framework: str
    model: str | None  # the catalog's option name
    planned_device: str  # as the operator planned it
    simulated_gpu: bool  # the node's GPU is simulated: run on the CPU and say so
    selection: str | None
    namespace: str | None
    pod_name: str | None
    port: int
    host: str = ALL_ADDRESSES  # the address to listen on
    # How long it keeps answering after SIGTERM (drain.py), within the grace period.
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    # A warm pod (model_pod/warm.py): the options it may switch between, in place.
    warm: tuple[WarmOption, ...] = ()
    keep_warm_seconds: float = DEFAULT_KEEP_WARM_SECONDS
    memory_request_gb: float = 0.0  # the pod's memory request: parked models live within it

    @property
    def device(self) -> str:
        """Where the model really runs: the CPU when the planned GPU is simulated."""
        return "cpu" if self.simulated_gpu else self.planned_device

    @property
    def reports(self) -> bool:
        """Whether there is a ModelSelection to report to."""
        return bool(self.selection and self.namespace)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise IdentityError(f"{name} is not set")
    return value


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _number(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise IdentityError(f"{name}={raw!r} is not a number") from exc
    if value < 0:
        raise IdentityError(f"{name}={raw!r} must not be negative")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise IdentityError(f"{name}={raw!r} is not an integer") from exc
    if not low <= value <= high:
        raise IdentityError(f"{name}={value} must lie in [{low}, {high}]")
    return value


def _weights_path(env: Mapping[str, str]) -> str | None:
    """The fetched weights' cache entry: an absolute path, when set."""
    value = _optional(env, ENV_WEIGHTS_PATH)
    if value is not None and not value.startswith("/"):
        raise IdentityError(f"{ENV_WEIGHTS_PATH}={value!r} must be an absolute path")
    return value


def _address(env: Mapping[str, str], name: str) -> str:
    """An IP address to listen on (`ALL_ADDRESSES` when unset)."""
    value = _optional(env, name)
    if value is None:
        return ALL_ADDRESSES
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise IdentityError(f"{name}={value!r} is not an IP address") from exc
    return value


def identity_from_env(env: Mapping[str, str] | None = None) -> Identity:
    """Read and check the process's identity; raise IdentityError naming what is wrong."""
    env = get_settings().variables() if env is None else env
    framework = _required(env, c.ENV_FRAMEWORK)
    known = [f.value for f in Framework]
    if framework not in known:
        raise IdentityError(f"{c.ENV_FRAMEWORK}={framework!r} is not one of {', '.join(known)}")
    if framework not in (*IN_PROCESS_FRAMEWORKS, *ENGINE_FRAMEWORKS):
        raise IdentityError(f"{c.ENV_FRAMEWORK}={framework!r} runs no model server of its own")
    device = _optional(env, c.ENV_DEVICE) or "cpu"
    if not _DEVICE.match(device):
        raise IdentityError(f"{c.ENV_DEVICE}={device!r} must be 'cpu' or 'cuda:N'")
    if device == "cuda":
        device = "cuda:0"
    selection = _optional(env, c.ENV_SELECTION)
    namespace = _optional(env, c.ENV_NAMESPACE)
    for name, value in ((c.ENV_SELECTION, selection), (c.ENV_NAMESPACE, namespace)):
        if value is not None and not _DNS_NAME.match(value):
            raise IdentityError(f"{name}={value!r} is not a valid Kubernetes name")
    if selection and not namespace:
        raise IdentityError(f"{c.ENV_SELECTION} is set but {c.ENV_NAMESPACE} is not")
    spec = ModelSpec(
        task=_required(env, c.ENV_TASK),
        model_id=_required(env, c.ENV_MODEL_ID),
        architecture=_optional(env, c.ENV_ARCHITECTURE),
        allow_random_weights=env_flag(env.get(c.ENV_ALLOW_RANDOM_WEIGHTS)),
        batch_size=_integer(env, c.ENV_BATCH_SIZE, 1, 1, 1024),
        declared_vram_gb=_number(env, c.ENV_DECLARED_VRAM_GB, None),
        weights_path=_weights_path(env),
    )
    warm: tuple[WarmOption, ...] = ()
    raw_warm = _optional(env, ENV_WARM_OPTIONS)
    if raw_warm is not None:
        try:
            warm = parse_warm_options(raw_warm)
        except ValueError as exc:
            raise IdentityError(str(exc)) from exc
        model = _optional(env, c.ENV_MODEL)
        if model not in {o.model for o in warm}:
            raise IdentityError(f"{ENV_WARM_OPTIONS} does not name {c.ENV_MODEL}={model!r}")
    return Identity(
        spec=spec,
        framework=framework,
        model=_optional(env, c.ENV_MODEL),
        planned_device=device,
        # Only a GPU plan can be simulated; a CPU plan on such a node is just the CPU.
        simulated_gpu=env_flag(env.get(c.ENV_SIMULATED_GPU)) and device.startswith("cuda"),
        selection=selection,
        namespace=namespace,
        pod_name=_optional(env, c.ENV_POD_NAME) or _optional(env, "HOSTNAME"),
        port=_integer(env, c.ENV_PORT, c.MODEL_POD_PORT, 1, 65535),
        host=_address(env, c.ENV_HOST),
        drain_seconds=drain_period(
            _number(env, c.ENV_DRAIN_SECONDS, DEFAULT_DRAIN_SECONDS) or 0.0,
            _number(env, c.ENV_TERMINATION_GRACE_SECONDS, DEFAULT_GRACE_SECONDS) or 0.0,
        ),
        warm=warm,
        keep_warm_seconds=_number(env, ENV_KEEP_WARM_SECONDS, DEFAULT_KEEP_WARM_SECONDS) or 0.0,
        memory_request_gb=_number(env, ENV_MEMORY_REQUEST_GB, 0.0) or 0.0,
    )
