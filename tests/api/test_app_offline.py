"""The app's HTTP surface when the Kubernetes API cannot be reached at all.

No fake: the kubeconfig points at a loopback port where nothing listens, so
the real cache really fails to connect. Reads must answer the contract's 503,
and bad requests their 400, in the `{"error": ...}` shape.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from fovea.api.app import create_app
from fovea.api.settings import Settings

CONNECTION_FAILED = {"error": "Connection to model service failed"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "nowhere",
                        "cluster": {
                            "server": f"https://127.0.0.1:{closed_port()}",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "nowhere", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return str(path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(kubeconfig=unreachable_kubeconfig(tmp_path), reconnect_max_backoff_seconds=0.5)


@pytest.fixture
def http(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/models/config"),
        ("GET", "/api/models/status"),
        ("POST", "/api/models/validate"),
        ("POST", "/api/models/select?task_type=object_detection&model_name=yolov8n"),
        ("POST", "/api/models/select?taskType=object_detection&modelName=yolov8n"),
        ("POST", "/api/models/load/object_detection"),
        ("POST", "/api/models/unload/object_detection"),
    ],
)
def test_an_unreachable_cluster_answers_the_contracts_503(
    http: TestClient, method: str, path: str
) -> None:
    response = http.request(method, path)
    assert response.status_code == 503
    assert response.json() == CONNECTION_FAILED


def test_readyz_says_why_and_healthz_stays_alive(http: TestClient) -> None:
    ready = http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"].startswith("Cache not synced: ")
    assert "modelselections" in ready.json()["error"]
    assert http.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "Missing required parameter: task_type"),
        ("?task_type=object_detection", "Missing required parameter: model_name"),
        ("?modelName=yolov8n", "Missing required parameter: task_type"),
        ("?task_type=a&taskType=b&model_name=m", "Conflicting values for task_type: a, b"),
        ("?task_type=a&model_name=m&wait=soon", "Invalid value for wait: "),
        ("?task_type=a&model_name=m&wait=-1", "Invalid value for wait: "),
    ],
)
def test_bad_select_parameters_are_400_in_the_error_shape(
    http: TestClient, query: str, message: str
) -> None:
    response = http.post(f"/api/models/select{query}")
    assert response.status_code == 400
    assert set(response.json()) == {"error"}
    assert response.json()["error"].startswith(message)


def test_unknown_routes_and_methods_keep_the_error_shape(http: TestClient) -> None:
    missing = http.get("/api/models/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}
    wrong = http.put("/api/models/config")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "Method Not Allowed"}
    assert wrong.headers["allow"] == "GET"


def test_openapi_documents_400_not_fastapis_422(http: TestClient) -> None:
    schema = http.get("/openapi.json").json()
    select = schema["paths"]["/api/models/select"]["post"]
    assert "422" not in select["responses"]
    assert {"200", "400", "404", "500", "503"} <= set(select["responses"])
    names = {p["name"] for p in select["parameters"]}
    assert {"task_type", "model_name", "taskType", "modelName", "wait"} <= names
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path in schema["paths"].values():
        for operation in path.values():
            assert "422" not in operation["responses"]
    # No security scheme is claimed when no token is configured.
    assert "securitySchemes" not in schema["components"]


def test_metrics_report_the_cache_as_not_synced(http: TestClient) -> None:
    http.get("/api/models/config")
    text = http.get("/metrics").text
    assert "fovea_api_cache_synced 0.0" in text
    assert 'route="/api/models/config",status="503"' in text


def test_a_configured_token_guards_the_mutating_routes_only(settings: Settings) -> None:
    guarded = settings.model_copy(update={"api_token": SecretStr("s3cret")})
    with TestClient(create_app(guarded)) as http:
        path = "/api/models/select?task_type=object_detection&model_name=yolov8n"
        assert http.post(path).status_code == 401
        assert http.post(path).json() == {"error": "Missing or invalid bearer token"}
        wrong = {"Authorization": "Bearer nope"}
        assert http.post(path, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert http.post(path, headers=right).status_code == 503  # past the guard
        assert http.post("/api/models/unload/x").status_code == 401
        assert http.get("/api/models/config").status_code == 503  # reads need no token
        schema = http.get("/openapi.json").json()
        assert "401" in schema["paths"]["/api/models/select"]["post"]["responses"]
        assert "securitySchemes" in schema["components"]


def test_cors_is_off_unless_origins_are_configured(settings: Settings) -> None:
    origin = {"Origin": "http://localhost:3000"}
    with TestClient(create_app(settings)) as http:
        assert "access-control-allow-origin" not in http.get("/healthz", headers=origin).headers
    allowed = settings.model_copy(update={"cors_origins": ["http://localhost:3000"]})
    with TestClient(create_app(allowed)) as http:
        headers = http.get("/healthz", headers=origin).headers
        assert headers["access-control-allow-origin"] == "http://localhost:3000"
