"""Image references in the form nodes list them (`status.images[].names`)."""

from __future__ import annotations

import pytest

from fovea.domain.image_refs import normalize_image


@pytest.mark.parametrize(
    ("ref", "normal"),
    [
        ("python", "docker.io/library/python:latest"),
        ("python:3.11", "docker.io/library/python:3.11"),
        ("org/app:1", "docker.io/org/app:1"),
        ("docker.io/python:3.11", "docker.io/library/python:3.11"),
        ("index.docker.io/org/app", "docker.io/org/app:latest"),
        ("ghcr.io/fovea-models/model-pod:0.1.0-cpu", "ghcr.io/fovea-models/model-pod:0.1.0-cpu"),
        ("localhost/app", "localhost/app:latest"),
        ("registry:5000/app", "registry:5000/app:latest"),
        ("registry:5000/team/app:2", "registry:5000/team/app:2"),
        ("ghcr.io/o/x@sha256:ab12", "ghcr.io/o/x@sha256:ab12"),
        ("ghcr.io/o/x:1@sha256:ab12", "ghcr.io/o/x@sha256:ab12"),
        ("python@sha256:ab12", "docker.io/library/python@sha256:ab12"),
        ("  fovea.local/pause:3.10 ", "fovea.local/pause:3.10"),
    ],
)
def test_references_are_fully_qualified(ref: str, normal: str) -> None:
    assert normalize_image(ref) == normal
    assert normalize_image(normal) == normal  # idempotent: node names stay as they are
