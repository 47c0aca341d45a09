"""Small pure pieces: kubeconfig re-reading, and how API server refusals are worded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from kubernetes.client.exceptions import ApiException

from fovea.api.clients import ClientSource
from fovea.api.errors import BadRequest, ClusterUnavailable
from fovea.api.writes import translate


def write_kubeconfig(path: Path, port: int) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))


def test_a_rewritten_kubeconfig_gives_a_new_client(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, 6443)
    source = ClientSource(str(path))
    first = source.get()
    assert source.get() is first  # unchanged file: same client
    write_kubeconfig(path, 7443)
    os.utime(path, ns=(1, 1))  # a distinct stamp even on a coarse clock
    second = source.get()
    assert second is not first
    assert second.configuration.host == "https://127.0.0.1:7443"


def test_a_broken_rewrite_keeps_the_old_client(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, 6443)
    source = ClientSource(str(path))
    first = source.get()
    path.write_text("clusters: [half written")
    assert source.get() is first


def refusal(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="Refused")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


def test_refusals_are_worded_for_the_client() -> None:
    assert isinstance(translate(refusal(503, "etcd down")), ClusterUnavailable)
    assert translate(refusal(503, "etcd down")).message == "Connection to model service failed"
    invalid = translate(refusal(422, "spec.priority: Invalid value: 5000"))
    assert isinstance(invalid, BadRequest)
    assert invalid.message == "Rejected by the cluster: spec.priority: Invalid value: 5000"
    forbidden = translate(refusal(403, "cannot patch modelselections"))
    assert forbidden.status_code == 500
    assert "Not allowed to update ModelSelections" in forbidden.message
