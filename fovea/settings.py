"""Settings of the command line (`fovea-models` user commands and `up`) and of the shared
cluster login (fovea/kube.py): the one place they read or change the environment.

Each variable is documented once, in docs/configuration.md ("Command line").
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fovea.domain import constants as c

ENV_API = "FOVEA_API"
ENV_TOKEN = "FOVEA_API_TOKEN"


class CliSettings(BaseSettings):
    """Every variable the command line reads, by its own name."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # The kubeconfig of the cluster (else the in-cluster service account).
    kubeconfig: str = Field("", alias=c.ENV_KUBECONFIG)
    # The user commands' API (else http://localhost:3001) and its bearer token.
    api_url: str = Field("", alias=ENV_API)
    api_token: str | None = Field(None, alias=ENV_TOKEN)
    # Any value turns colours off (https://no-color.org).
    no_color: str = Field("", alias="NO_COLOR")


def get_settings() -> CliSettings:
    """The environment as it is now (cheap; tests change it between cases)."""
    return CliSettings()


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment for a child (kubectl, the operator, the API), `extra` over it."""
    return {**os.environ, **extra}


def export_kubeconfig(path: str) -> None:
    """Name the kubeconfig in the environment, for a library that reads it only there (kopf)."""
    os.environ[c.ENV_KUBECONFIG] = path
