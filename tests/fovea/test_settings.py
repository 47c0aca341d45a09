"""The environment is read in the settings modules only, and each of them names what it reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fovea.domain import constants as c
from fovea.model_pod.settings import ModelPodSettings, get_settings

REPO = Path(__file__).resolve().parents[2]
# One settings module per process (docs/configuration.md documents each variable once).
SETTINGS = {
    "operator/settings.py",
    "api/settings.py",
    "model_pod/settings.py",
    "localcluster/settings.py",
    "fovea/settings.py",
}
PRODUCT = ("domain", "operator", "api", "model_pod", "localcluster", "fovea")
READS = re.compile(r"\bos\.(environ|getenv|putenv|unsetenv)\b|\bfrom os import .*\benviron\b")


def test_no_module_outside_the_settings_modules_touches_the_environment() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for folder in PRODUCT
        for path in sorted((REPO / folder).rglob("*.py"))
        if str(path.relative_to(REPO)) not in SETTINGS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if READS.search(line)
    ]
    assert found == []


def test_every_variable_the_model_pod_names_is_one_of_its_settings() -> None:
    """A variable read through identity.py but missing here would be ignored without a word."""
    aliases = {field.alias for field in ModelPodSettings.model_fields.values()}
    named = {
        getattr(c, name)
        for path in (REPO / "model_pod").rglob("*.py")
        for name in re.findall(r"\bc\.(ENV_[A-Z0-9_]+)", path.read_text())
    }
    assert named and named - aliases == set()


def test_model_pod_settings_read_the_variables_by_their_own_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(c.ENV_TASK, "embedding")
    monkeypatch.setenv("HF_TOKEN", "hf-t0ken")
    monkeypatch.delenv(c.ENV_MODEL_ID, raising=False)
    settings = get_settings()
    assert settings.task == "embedding"
    assert "hf-t0ken" not in repr(settings)  # a token is never printed
    variables = settings.variables()
    assert variables[c.ENV_TASK] == "embedding" and variables["HF_TOKEN"] == "hf-t0ken"
    assert c.ENV_MODEL_ID not in variables  # unset: absent, as from the environment
