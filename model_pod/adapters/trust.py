"""Which weight files may run code when loaded: only those in the trusted model directory.

TorchScript archives and ultralytics `.pt` checkpoints are pickles: loading
one runs whatever it says. A catalog writer names the file (`model_id`), so
such files are loaded only from the platform's model volume (`/models`, or
FOVEA_TRUSTED_WEIGHTS_DIR), which the platform team fills. Elsewhere only
formats that hold tensors and nothing else are read: `.safetensors`, and
plain state dicts through `torch.load(weights_only=True)`. transformers
reads `.bin` checkpoints with `weights_only=True` by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fovea.domain.resources import MODEL_DIR
from fovea.model_pod.settings import ENV_TRUSTED_WEIGHTS_DIR as ENV_TRUSTED_WEIGHTS_DIR
from fovea.model_pod.settings import get_settings


def trusted_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory whose files may be unpickled (symlinks resolved)."""
    env = get_settings().variables() if environ is None else environ
    return Path(env.get(ENV_TRUSTED_WEIGHTS_DIR) or MODEL_DIR).resolve()


def pickle_refusal(path: Path, what: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Why `path` (a `what`, e.g. "a TorchScript archive") must not be loaded, or None."""
    trusted = trusted_dir(environ)
    if path.resolve().is_relative_to(trusted):
        return None
    return (
        f"{path} is {what}, which runs code when loaded: such files are loaded only from "
        f"{trusted} (the trusted model volume); put it there, or give .safetensors weights"
    )
