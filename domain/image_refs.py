"""Container image references, compared the way a node reports them (pure).

A node's `status.images[].names` holds fully qualified references
(`docker.io/library/python:3.11`, `ghcr.io/org/x@sha256:…`), while a pod spec
may say `python:3.11`. `normalize_image` gives both the same form, the one the
Docker reference grammar defines (github.com/distribution/reference,
ParseNormalizedNamed): a registry host is added when the first path component
is not one (`docker.io`, with `library/` for a one-component name) and the tag
`latest` when neither a tag nor a digest is given; with a digest, the tag
goes (nodes list an image by `name@digest` and by `name:tag`).
"""

from __future__ import annotations

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"


def normalize_image(ref: str) -> str:
    """The fully qualified form of an image reference (`x` -> `docker.io/library/x:latest`)."""
    ref = ref.strip()
    name, at, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if not slash:
        name = f"{DEFAULT_REGISTRY}/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"{DEFAULT_REGISTRY}/{name}"
    elif first in ("index.docker.io", DEFAULT_REGISTRY) and "/" not in rest:
        name = f"{DEFAULT_REGISTRY}/library/{rest}"
    elif first == "index.docker.io":
        name = f"{DEFAULT_REGISTRY}/{rest}"
    if at:  # the digest names the image; a tag beside it says nothing more
        head, _, last = name.rpartition("/")
        return f"{head}/{last.split(':', 1)[0]}@{digest}"
    if ":" not in name.rsplit("/", 1)[-1]:
        name = f"{name}:{DEFAULT_TAG}"
    return name
