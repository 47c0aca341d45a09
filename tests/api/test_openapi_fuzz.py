"""Schemathesis against the live API's own /openapi.json: no 5xx, and every answer as documented."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from api_builders import examples_catalog
from api_server import ApiServer
from kube_testing import Kube, eventually

pytestmark = pytest.mark.integration


TOKEN = "fuzz-token"


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
def test_schemathesis_finds_nothing_undocumented(
    kube: Kube, api_factory: Callable[..., ApiServer], tmp_path: Path, token: str | None
) -> None:
    """Every check: status codes, content types, headers and bodies as documented.

    With a token (as the in-cluster overlays run it), the writes document 401
    and `ignored_auth` proves they answer it whenever the token is missing.
    """
    api = api_factory(api_token=token) if token else api_factory()
    api.wait_ready()
    kube.apply_catalog(examples_catalog())
    kube.select("object_detection", "yolov8n")
    kube.patch_status(
        "object_detection",
        {
            "phase": "Ready",
            "node": "fovea-gpu-0",
            "gpuIndex": 0,
            "runtime": {"state": "Ready", "modelId": "yolov8n", "measuredMemoryGb": 0.5},
        },
    )
    assert eventually(lambda: api.http.get("/api/models/status").json()["loaded_models"], 10)
    # The console script installed next to this interpreter (the venv need not be on PATH).
    binary = Path(sys.executable).with_name("schemathesis")
    assert binary.is_file(), "schemathesis is not installed"
    result = subprocess.run(
        [
            str(binary),
            "run",
            f"{api.url}/openapi.json",
            # An endless event stream has no response to validate.
            "--exclude-path",
            "/api/models/events",
            "--checks",
            "all",
            # Task types are data (the catalog), not an enum of the schema: a well-formed
            # but unknown task is the contract's 400 "Invalid task_type", not a 2xx.
            "--exclude-checks",
            "positive_data_acceptance",
            "--workers",
            "1",
            "--max-examples",
            "50",
            *(["--header", f"Authorization: Bearer {token}"] if token else []),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its .schemathesis/ cache goes there, not into the repository
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
