"""Whether a model hub can be reached, decided quickly and said plainly.

Hugging Face's client retries an unreachable hub for about 25 seconds before
giving up; one short TCP connect answers the same question in milliseconds
on a machine with no route, and gives the reason a status can show.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from fovea.model_pod.adapters.base import env_flag
from fovea.model_pod.settings import get_settings

DEFAULT_HUB = "https://huggingface.co"
CONNECT_TIMEOUT_SECONDS = 3.0


def hub_offline_reason(environ: dict[str, str] | None = None) -> str | None:
    """Why the hub must not be used (offline mode set), or None if it may be tried."""
    env = get_settings().variables() if environ is None else environ
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if env_flag(env.get(name)):
            return f"the hub is offline ({name}=1)"
    return None


def hub_unreachable_reason(
    endpoint: str | None = None, timeout: float = CONNECT_TIMEOUT_SECONDS
) -> str | None:
    """None if a TCP connection to the hub opens, else why it does not."""
    url = urlparse(endpoint or get_settings().hf_endpoint or DEFAULT_HUB)
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"the hub ({host}) is unreachable: {exc}"
