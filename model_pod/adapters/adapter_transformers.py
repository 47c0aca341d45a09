"""Hugging Face transformers models, offline-friendly, as base models (`AutoModel`).

Where the weights come from, in order:
1. `model_id` is a local directory: loaded from there.
2. the Hugging Face cache already holds `model_id`: loaded from there, no network.
3. the hub, unless offline (`HF_HUB_OFFLINE`/`TRANSFORMERS_OFFLINE`) or unreachable.
4. random weights, only when the option allows it: built from `architecture`
   (a tiny named config, a `model_type` such as `bert`, or a path to a
   config.json) or from `model_id`'s config if the cache holds just that.
Otherwise loading fails with a reason that says the weights are not on disk
and why the hub could not supply them.

Predict (text models): `{"texts": ["...", ...]}` or `{"input_ids": [[...]]}`;
(vision models): `{"image": "<base64>"}`. The answer is
`{"embeddings": [[...]], "shape": [...], "tokenizer": ...}`: the mean over
the sequence of the last hidden state, one row per input, and the shape of
that hidden state. Without a tokenizer on disk, text is tokenized as UTF-8
bytes (modulo the vocabulary) and the answer says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fovea.model_pod.adapters.base import (
    WARMUP_SEQUENCE_LENGTH,
    LoadedModel,
    LoadError,
    ModelSpec,
    PredictError,
    weights_location,
)
from fovea.model_pod.adapters.device import check_device, decode_image
from fovea.model_pod.adapters.hub import hub_offline_reason, hub_unreachable_reason

# Small configurations for demos and tests: (model_type, overrides of its defaults).
TINY_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "bert-tiny": (
        "bert",
        {
            "hidden_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 512,
        },
    ),
    "gpt2-tiny": ("gpt2", {"n_embd": 128, "n_layer": 2, "n_head": 2}),
    "vit-tiny": (
        "vit",
        {
            "hidden_size": 192,
            "num_hidden_layers": 2,
            "num_attention_heads": 3,
            "intermediate_size": 768,
            "image_size": 224,
            "patch_size": 16,
        },
    ),
}

MAX_TEXTS = 64
BYTES_TOKENIZER = "utf-8 bytes (no tokenizer on disk)"


def architecture_config(name: str) -> Any:
    """A transformers config from a tiny-config name, a config path or a model_type."""
    from transformers import AutoConfig

    if name in TINY_CONFIGS:
        model_type, overrides = TINY_CONFIGS[name]
        return AutoConfig.for_model(model_type, **overrides)
    if Path(name).exists():
        try:
            return AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as exc:
            raise LoadError(f"architecture config {name} could not be read: {exc}") from exc
    try:
        return AutoConfig.for_model(name)
    except ValueError as exc:
        known = ", ".join(sorted(TINY_CONFIGS))
        raise LoadError(
            f"unknown transformers architecture {name!r}: not one of {known}, "
            "not a config path, not a model_type"
        ) from exc


class TransformersAdapter:
    """Loads and serves one transformers base model."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = torch.device("cpu")

    # --- loading ---------------------------------------------------------------

    def prepare(self) -> None:
        """Import the framework, before any model (the runtime's share of a load)."""
        import transformers  # noqa: F401

    def load(self, device: str) -> LoadedModel:
        self.device = check_device(device)
        from transformers import AutoModel

        model_id = weights_location(self.spec, want_file=False)
        if Path(model_id).is_dir():
            model = self._from_pretrained(AutoModel, model_id, local_only=True)
            source = f"weights from {model_id}"
            random_weights = False
        else:
            model, why_missing = self._from_cache_or_hub(AutoModel)
            if model is not None:
                source = f"weights for {model_id} from the Hugging Face cache or hub"
                random_weights = False
            elif self.spec.allow_random_weights:
                config, config_source = self._random_config(why_missing)
                with self.device:
                    model = AutoModel.from_config(config)
                source = f"random weights: built from {config_source} ({why_missing})"
                random_weights = True
            else:
                raise LoadError(why_missing)
        self.model = model.to(self.device).eval()
        return LoadedModel(device=str(self.device), random_weights=random_weights, source=source)

    def _from_pretrained(self, auto_class: Any, name: str, local_only: bool) -> Any:
        from transformers import AutoTokenizer

        model = auto_class.from_pretrained(name, local_files_only=local_only, dtype="auto")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
        except (OSError, ValueError, TypeError):
            self.tokenizer = None  # vision and audio models have none
        return model

    def _from_cache_or_hub(self, auto_class: Any) -> tuple[Any, str]:
        """The pretrained model, or None and the reason it is not available."""
        model_id = self.spec.model_id
        try:
            return self._from_pretrained(auto_class, model_id, local_only=True), ""
        except OSError:
            pass  # not in the cache: the hub may still have it
        missing = f"weights for {model_id!r} are not on disk"
        hub_problem = hub_offline_reason() or hub_unreachable_reason()
        if hub_problem:
            return None, f"{missing} and {hub_problem}"
        try:
            return self._from_pretrained(auto_class, model_id, local_only=False), ""
        except OSError as exc:
            return None, f"{missing} and the hub did not provide them: {_one_line(exc)}"

    def _random_config(self, why_missing: str) -> tuple[Any, str]:
        if self.spec.architecture:
            return architecture_config(self.spec.architecture), (
                f"architecture {self.spec.architecture!r}"
            )
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(self.spec.model_id, local_files_only=True)
        except OSError as exc:
            raise LoadError(
                f"{why_missing}; random weights are allowed but no architecture is named "
                f"and no config for {self.spec.model_id!r} is on disk"
            ) from exc
        return config, f"the cached config of {self.spec.model_id}"

    # --- running ---------------------------------------------------------------

    @property
    def module(self) -> Any:
        """The loaded model (a torch module)."""
        return self.model

    def _require(self) -> Any:
        if self.model is None:
            raise RuntimeError("model not loaded")
        return self.model

    def dummy_inputs(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Synthetic inputs of the model's main input kind, for the warm-up pass."""
        model = self._require()
        config = model.config
        name = model.main_input_name
        if name == "input_ids":
            ids = torch.randint(
                0, config.vocab_size, (batch_size, WARMUP_SEQUENCE_LENGTH), device=self.device
            )
            return self._text_inputs(ids, torch.ones_like(ids))
        if name == "pixel_values":
            size = _pair(getattr(config, "image_size", 224))
            channels = getattr(config, "num_channels", 3)
            return {"pixel_values": self._float(torch.randn(batch_size, channels, *size))}
        if name == "input_values":
            return {"input_values": self._float(torch.randn(batch_size, 16000))}
        raise LoadError(f"cannot build warm-up inputs for main input {name!r}")

    def _float(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, dtype=self._require().dtype)

    def _text_inputs(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": ids, "attention_mask": mask}
        if getattr(self._require().config, "is_encoder_decoder", False):
            inputs["decoder_input_ids"] = ids
        return inputs

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            outputs = self._require()(**inputs)
        hidden = getattr(outputs, "last_hidden_state", None)
        if hidden is None:
            hidden = outputs[0]
        result: torch.Tensor = hidden
        return result

    def warmup(self, batch_size: int) -> None:
        self._forward(self.dummy_inputs(batch_size))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def predict(self, payload: dict[str, Any]) -> dict[str, Any]:
        inputs, tokenizer = self._predict_inputs(payload)
        hidden = self._forward(inputs)
        mask = inputs.get("attention_mask")
        if mask is not None and hidden.dim() == 3 and hidden.shape[:2] == mask.shape:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        else:
            pooled = hidden.flatten(1, -2).mean(1) if hidden.dim() > 2 else hidden
        return {
            "embeddings": pooled.float().cpu().tolist(),
            "shape": list(hidden.shape),
            "tokenizer": tokenizer,
        }

    def _predict_inputs(self, payload: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
        model = self._require()
        if model.main_input_name == "pixel_values":
            image = decode_image(payload)
            size = _pair(getattr(model.config, "image_size", 224))
            pixels = torch.tensor(list(image.resize(size[::-1]).getdata()), dtype=torch.float32)
            pixels = pixels.view(size[0], size[1], 3).permute(2, 0, 1) / 127.5 - 1.0
            return {"pixel_values": self._float(pixels.unsqueeze(0))}, "image resized to model"
        if model.main_input_name != "input_ids":
            raise PredictError(f"predict does not support main input {model.main_input_name!r}")
        if "input_ids" in payload:
            ids = _id_batch(payload["input_ids"], model.config.vocab_size)
            return self._text_inputs(ids.to(self.device), torch.ones_like(ids)), "none (ids given)"
        texts = payload.get("texts", payload.get("text"))
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise PredictError('expected {"texts": ["...", ...]} or {"input_ids": [[...]]}')
        if len(texts) > MAX_TEXTS:
            raise PredictError(f"at most {MAX_TEXTS} texts per request")
        max_length = min(getattr(model.config, "max_position_embeddings", 512) or 512, 512)
        if self.tokenizer is not None:
            encoded = self.tokenizer(
                texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length
            )
            ids, mask = encoded["input_ids"], encoded["attention_mask"]
            tokenizer = type(self.tokenizer).__name__
        else:
            ids, mask = _bytes_tokenize(texts, model.config.vocab_size, max_length)
            tokenizer = BYTES_TOKENIZER
        return self._text_inputs(ids.to(self.device), mask.to(self.device)), tokenizer

    def failure(self) -> str | None:
        return None  # in-process: a failure here ends the process itself

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _pair(size: Any) -> tuple[int, int]:
    if isinstance(size, list | tuple):
        return int(size[0]), int(size[-1])
    return int(size), int(size)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _id_batch(value: Any, vocab_size: int) -> torch.Tensor:
    try:
        ids = torch.tensor(value, dtype=torch.long)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise PredictError(f"input_ids must be a rectangular list of integers: {exc}") from exc
    if ids.dim() != 2 or ids.numel() == 0:
        raise PredictError("input_ids must be a non-empty list of lists")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise PredictError(f"input_ids must lie in [0, {vocab_size})")
    return ids


def _bytes_tokenize(
    texts: list[str], vocab_size: int, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids from UTF-8 bytes (modulo the vocabulary), right-padded with 0."""
    rows = [[byte % vocab_size for byte in text.encode()][:max_length] or [0] for text in texts]
    width = max(len(row) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row)
        mask[index, : len(row)] = 1
    return ids, mask
