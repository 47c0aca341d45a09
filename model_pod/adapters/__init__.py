"""One adapter per framework; `adapter_for` picks it (importing only what it needs)."""

from __future__ import annotations

from fovea.model_pod.adapters.base import Adapter, LoadError, ModelSpec

IN_PROCESS_FRAMEWORKS = ("pytorch", "transformers", "ultralytics")
ENGINE_FRAMEWORKS = ("sglang", "vllm")


def adapter_for(framework: str, spec: ModelSpec) -> Adapter:
    """The adapter for a framework name (the catalog's `framework` values)."""
    if framework == "pytorch":
        from fovea.model_pod.adapters.adapter_torch import TorchAdapter

        return TorchAdapter(spec)
    if framework == "transformers":
        from fovea.model_pod.adapters.adapter_transformers import TransformersAdapter

        return TransformersAdapter(spec)
    if framework == "ultralytics":
        from fovea.model_pod.adapters.adapter_ultralytics import UltralyticsAdapter

        return UltralyticsAdapter(spec)
    if framework in ENGINE_FRAMEWORKS:
        from fovea.model_pod.adapters.adapter_engine import EngineAdapter
        from fovea.model_pod.adapters.engine_commands import SGLANG, VLLM

        return EngineAdapter(spec, SGLANG if framework == "sglang" else VLLM)
    raise LoadError(
        f"framework {framework!r} has no model server: "
        f"in-process {', '.join(IN_PROCESS_FRAMEWORKS)}; engines {', '.join(ENGINE_FRAMEWORKS)}"
    )
