"""The local cluster's settings: the one place its processes (the supervisor of
`fovea-models cluster up`, its node agent) read or change the environment.

Each variable is documented once, in docs/configuration.md ("Local cluster"). The
agent's children (the control-plane components, each pod's processes) get the
agent's environment less what would describe something else: `child_environment`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fovea.domain import constants as c


class LocalClusterSettings(BaseSettings):
    """Every variable the local cluster reads, by its own name."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # Where `cluster up` keeps etcd, the PKI, logs and state.json.
    state_dir: str = Field("", alias=c.ENV_STATE_DIR)
    xdg_state_home: str = Field("", alias="XDG_STATE_HOME")
    # Prebuilt control-plane binaries (else gobuild/build.sh builds them into $FOVEA_CACHE).
    k8s_bin_dir: str = Field("", alias=c.ENV_K8S_BIN_DIR)

    def default_state_dir(self) -> Path:
        """`$FOVEA_STATE_DIR`, else `$XDG_STATE_HOME/fovea-models/cluster` (~/.local/state/...)."""
        if self.state_dir:
            return Path(self.state_dir).expanduser()
        base = self.xdg_state_home or str(Path.home() / ".local" / "state")
        return Path(base) / "fovea-models" / "cluster"


def get_settings() -> LocalClusterSettings:
    """The environment as it is now (cheap; tests change it between cases)."""
    return LocalClusterSettings()


def child_environment(drop: Callable[[str], bool]) -> dict[str, str]:
    """This process's environment for a child, without the variables `drop` picks."""
    return {name: value for name, value in os.environ.items() if not drop(name)}


def prepend_to_path(directory: Path) -> None:
    """Put `directory` first on this process's PATH (and so its children's), once."""
    path = os.environ.get("PATH", "")
    if not path.startswith(f"{directory}{os.pathsep}"):
        os.environ["PATH"] = f"{directory}{os.pathsep}{path}"
