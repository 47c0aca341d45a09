"""Which images a catalog may run as model pods (the operator's allowlist; pure).

A catalog option's `image` becomes a pod's image: whoever may write a catalog
could otherwise run any code in the cluster with the model pods' identity.
Each allowlist entry is either an image repository (`ghcr.io/org/name`: any
tag or digest of it) or a prefix ending in `/` (`ghcr.io/org/`: every
repository under it). The default allows the project's own images only.
"""

from __future__ import annotations

from collections.abc import Sequence

PROJECT_IMAGES = ("ghcr.io/fovea-models/",)


def image_allowed(image: str, allowed: Sequence[str]) -> bool:
    """Whether `image` matches an entry of `allowed`."""
    for entry in allowed:
        if entry.endswith("/"):
            if image.startswith(entry):
                return True
        elif image == entry or image.startswith((f"{entry}:", f"{entry}@")):
            return True
    return False


def image_refusal(image: str, allowed: Sequence[str]) -> str | None:
    """Why a catalog's `image` may not run, or None."""
    if image_allowed(image, allowed):
        return None
    shown = image if len(image) <= 200 else f"{image[:200]}…"
    return (
        f"Image '{shown}' is not allowed: the operator runs only images matching "
        f"{', '.join(allowed) or '(none)'} (FOVEA_OPERATOR_ALLOWED_IMAGES)"
    )
