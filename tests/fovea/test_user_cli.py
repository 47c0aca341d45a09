"""`fovea-models list|ps|select|load|unload|validate|logs|describe|predict` as people run them.

Each command runs as its own process against the real API on a loopback
port, the API against the session's local cluster (and, where a model must
load, the real operator and model pods). Pure functions get unit tests below.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_builders import selection, state
from api_server import ApiServer, free_port
from fovea.api import inspect
from fovea.api.errors import InvalidTaskType, ModelNotFound
from fovea.api.settings import Settings
from fovea.cli import EPILOG, build_parser
from fovea.usercli import views
from fovea.usercli.client import Api, CliError, Target, error_message, exit_code_for
from fovea.usercli.commands import image_type, request_body
from kube_testing import Kube, eventually

TASK = "object_detection"
TOKEN = "s3cret-token"
WAIT_S = "240"


def tiny(model_id: str, **extra: Any) -> dict[str, Any]:
    """A model the model pod builds and loads on a CPU in a second."""
    return {
        "modelId": model_id,
        "framework": "pytorch",
        "vramGb": 1.0,
        "architecture": "mlp-tiny",
        "allowRandomWeights": True,
        **extra,
    }


CATALOG = {
    "tasks": {
        TASK: {
            "options": {
                "tiny-a": tiny("fovea/tiny-a", cpuMemoryGb=0.5),
                "tiny-b": tiny("fovea/tiny-b"),
                "broken": {"modelId": "fovea/no-such-model", "vramGb": 1.0},
                "huge": tiny("fovea/huge", vramGb=500.0),
            }
        },
        "object_tracking": {"options": {"tracker": tiny("fovea/tracker")}},
    },
    "inference": {"offloadThreshold": 0.8, "warmupOnStartup": True},
}


class Cli:
    """`python -m fovea.cli` against one API; returns (exit code, stdout, stderr)."""

    def __init__(self, url: str, env: dict[str, str] | None = None) -> None:
        self.url = url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FOVEA_API")}
        self.env.update(env or {})

    def __call__(
        self, *args: str, timeout: float = 300, stdin: str | None = None
    ) -> tuple[int, str, str]:
        result = subprocess.run(
            [sys.executable, "-P", "-m", "fovea.cli", *args, "--api", self.url],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )
        return result.returncode, result.stdout, result.stderr


@pytest.fixture
def serve(kubeconfig: str, namespace: str, crds: None) -> Iterator[Callable[..., ApiServer]]:
    servers: list[ApiServer] = []

    def start(**overrides: Any) -> ApiServer:
        settings = Settings(kubeconfig=kubeconfig, namespace=namespace, **overrides)
        server = ApiServer(settings).start()
        server.wait_ready()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def catalog(kube: Kube) -> None:
    kube.apply_catalog(CATALOG)


@pytest.fixture
def cli(serve: Callable[..., ApiServer], catalog: None) -> Cli:
    return Cli(serve().url)


def lines_of(table: str) -> list[list[str]]:
    return [line.split() for line in table.strip().splitlines()]


# --- against the live API ------------------------------------------------------------------------


def test_list_marks_the_selected_option_in_a_table_json_and_yaml(kube: Kube, cli: Cli) -> None:
    kube.select(TASK, "tiny-a")
    assert eventually(lambda: "tiny-a *" in cli("list")[1] or None, 20)
    code, out, err = cli("list")
    assert (code, err) == (0, "")
    rows = lines_of(out)
    assert rows[0][:3] == ["TASK", "OPTION", "FRAMEWORK"]
    assert "\x1b[" not in out  # no colours off a terminal
    by_option = {r[1]: r for r in rows[1:]}
    assert by_option["tiny-a"][:6] == [TASK, "tiny-a", "*", "pytorch", "1.0", "GB"]
    assert by_option["tiny-a"][6] == "yes" and by_option["tiny-b"][5] == "no"  # CPU fallback
    assert by_option["huge"][3:5] == ["500.0", "GB"]

    code, out, _ = cli("list", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert len(data) == 5
    first = next(r for r in data if r["option"] == "tiny-a")
    assert first == {
        "task": TASK,
        "option": "tiny-a",
        "selected": True,
        "model_id": "fovea/tiny-a",
        "framework": "pytorch",
        "declared_memory_gb": 1.0,
        "cpu_fallback": True,
        "description": None,
    }
    code, out, _ = cli("list", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == data


def test_select_wait_ps_logs_describe_unload_load_with_the_real_operator(
    kube: Kube, cli: Cli, operator: None
) -> None:
    code, out, err = cli("select", TASK, "tiny-b", "--wait", "--timeout", WAIT_S)
    assert code == 0, err
    assert out.splitlines()[0] == f"{TASK}: selected tiny-b (fovea/tiny-b)"
    assert f"{TASK}: tiny-b is Ready on fovea-gpu-" in out

    code, out, err = cli("ps")
    assert (code, err) == (0, "")
    rows = lines_of(out)
    assert rows[0][:4] == ["TASK", "MODEL", "PHASE", "DEVICE"]
    assert rows[1][:4] == [TASK, "tiny-b", "Ready", "cpu"]  # a simulated GPU runs on the CPU
    gpu_lines = [line for line in out.splitlines() if "used/threshold/total" in line]
    assert len(gpu_lines) == 3 and all(line.endswith("(simulated)") for line in gpu_lines)
    assert any(" / 19.2 / 24.0 GB" in line for line in gpu_lines)  # one rounding rule
    code, out, _ = cli("ps", "-o", "json")
    data = json.loads(out)
    [model] = data["models"]
    assert model["model"] == "tiny-b" and model["phase"] == "Ready"
    assert model["measured_memory_gb"] > 0 and model["declared_memory_gb"] == 1.0
    assert model["load_time_s"] is not None and model["node"].startswith("fovea-gpu-")
    held = [g for g in data["gpus"] if g["held_by"]]
    assert len(held) == 1 and held[0]["used_gb"] > 0

    code, out, err = cli("logs", TASK)
    assert code == 0, err
    assert "fovea/tiny-b" in out or "mlp-tiny" in out
    code, tail, _ = cli("logs", TASK, "--tail", "1")
    assert code == 0 and len(tail.strip().splitlines()) == 1

    follow = subprocess.Popen(
        [sys.executable, "-P", "-m", "fovea.cli", "logs", TASK, "-f", "--api", cli.url],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline()  # the log's first line arrives while it keeps following
        assert follow.poll() is None
    finally:
        follow.terminate()
        follow.wait(20)

    code, out, err = cli("describe", TASK)
    assert code == 0, err
    fields = dict(line.split(":", 1) for line in out.split("\n\n")[0].splitlines() if ":" in line)
    assert fields["Model"].strip() == "tiny-b" and fields["Phase"].strip() == "Ready"
    assert fields["Load"].strip() == "ready"
    assert "Conditions:" in out and "Events:" in out
    code, out, _ = cli("describe", TASK, "-o", "json")
    body = json.loads(out)
    assert body["status"]["phase"] == "Ready"
    assert {c["type"] for c in body["status"]["conditions"]} >= {"Ready"}
    assert any(e["object"].startswith("Pod/") for e in body["events"])

    code, out, err = cli("unload", TASK)
    assert code == 0, err
    assert out == f"{TASK}: unload of tiny-b requested (the selection stays)\n"
    assert eventually(lambda: json.loads(cli("ps", "-o", "json")[1])["models"] == [] or None, 90)
    code, out, err = cli("load", TASK, "--wait", "--timeout", WAIT_S)
    assert code == 0, err
    assert f"{TASK}: tiny-b is Ready" in out


def test_select_wait_exits_1_with_the_reason_when_the_model_fails_to_load(
    cli: Cli, operator: None
) -> None:
    code, out, err = cli("select", TASK, "broken", "--wait", "--timeout", WAIT_S)
    assert code == 1, out + err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    # The API's words (/select?wait='s error), once: "Failed to load model: <the pod's reason>".
    assert line.startswith(f"error: {TASK}: broken: Failed to load model: weights for ")
    assert line.count("Failed to load model") == 1


def test_select_wait_times_out_with_exit_1(cli: Cli) -> None:
    code, _, err = cli("select", TASK, "tiny-a", "--wait", "--timeout", "1")  # no operator
    assert code == 1
    last = err.splitlines()[-1]
    assert last.startswith(f"error: {TASK}: tiny-a not Ready after 1s (")
    assert last.endswith(
        f"the selection stays and the model is still loading (see `fovea-models describe {TASK}`)"
    )


def test_validate_exits_0_when_valid_1_when_not_with_what_ifs(kube: Kube, cli: Cli) -> None:
    kube.select(TASK, "tiny-a")
    assert eventually(lambda: cli("validate", "-o", "json")[0] == 0 or None, 20)
    code, out, _ = cli("validate")
    assert code == 0
    assert lines_of(out)[0] == ["TASK", "MODEL", "MEMORY", "PLACEMENT", "NODE/GPU", "DECIDED", "BY"]
    # The summary's figures are the body's, by the one rounding rule (max_allowed_gb 102.4).
    assert "valid: required 1.0 GB of 102.4 GB allowed (80% of 128.0 GB)" in out

    code, out, _ = cli("validate", f"{TASK}=huge")
    assert code == 1
    assert "NOT valid: required 500.0 GB" in out
    assert f"what-if: {TASK}=huge (nothing was changed)" in out
    assert any(line.startswith("warning: ") for line in out.splitlines())
    assert kube.selection(TASK)["spec"]["model"] == "tiny-a"  # unchanged

    code, out, _ = cli("validate", f"{TASK}=huge", "-o", "json")
    body = json.loads(out)
    assert code == 1 and body["valid"] is False
    assert body["model_requirements"][TASK] == {"model_name": "huge", "vram_gb": 500.0}
    code, out, _ = cli("validate", "object_tracking=tracker", "-o", "yaml")
    body = yaml.safe_load(out)
    assert code == 0 and body["valid"] is True
    assert set(body["model_requirements"]) == {TASK, "object_tracking"}


def test_errors_are_one_line_with_the_apis_message_and_exit_codes(
    kube: Kube, serve: Callable[..., ApiServer], catalog: None
) -> None:
    cli = Cli(serve().url)
    assert cli("describe", "nope") == (2, "", "error: Invalid task_type: nope\n")
    assert cli("select", "nope", "tiny-a") == (2, "", "error: Invalid task_type: nope\n")
    assert cli("select", TASK, "nope") == (
        2,
        "",
        f"error: Model 'nope' not found for task '{TASK}'\n",
    )
    assert cli("validate", f"{TASK}=nope") == (
        2,
        "",
        f"error: Model 'nope' not found for task '{TASK}'\n",
    )
    assert cli("validate", "nope=tiny-a")[2] == "error: Invalid task_type: nope\n"
    assert cli("logs", TASK) == (
        2,
        "",
        f"error: No model pod for task '{TASK}' (phase no selection)\n",
    )
    assert cli("load", TASK) == (2, "", f"error: No model selected for task '{TASK}'\n")

    nowhere = f"http://127.0.0.1:{free_port()}"
    code, out, err = Cli(nowhere)("ps")
    assert (code, out) == (4, "")
    assert err.startswith(f"error: cannot reach the API at {nowhere}: ") and err.count("\n") == 1

    guarded = serve(api_token=TOKEN)
    wrong = Cli(guarded.url, {"FOVEA_API_TOKEN": "wrong"})
    refused = (
        "error: Missing or invalid bearer token "
        "(the token given by --token or $FOVEA_API_TOKEN is not the API's)\n"
    )
    assert wrong("select", TASK, "tiny-a") == (3, "", refused)
    assert wrong("describe", TASK) == (3, "", refused)
    # No token at all (issue 28): the error says where one goes.
    assert Cli(guarded.url)("unload", TASK) == (
        3,
        "",
        "error: Missing or invalid bearer token "
        "(this API requires a token: pass --token TOKEN or set $FOVEA_API_TOKEN)\n",
    )
    assert Cli(guarded.url)("ps")[0] == 3  # reads that reach into the cluster need it too
    code, out, err = Cli(guarded.url)("select", TASK, "tiny-a", "--token", TOKEN)
    assert (code, err) == (0, "")
    code, _, err = Cli(guarded.url, {"FOVEA_API_TOKEN": TOKEN})("describe", TASK)
    assert (code, err) == (0, "")


def test_fovea_api_environment_variable_is_the_default_url(
    serve: Callable[..., ApiServer], catalog: None
) -> None:
    url = serve().url
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOVEA_API")}
    result = subprocess.run(
        [sys.executable, "-P", "-m", "fovea.cli", "list", "-o", "json"],
        env={**env, "FOVEA_API": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert {r["task"] for r in json.loads(result.stdout)} == {TASK, "object_tracking"}


SAMPLE = {"inputs": [[0.5] * 64]}  # one sample for mlp-tiny (64 in, 10 out)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32  # bytes that are not JSON


def test_predict_sends_json_or_an_image_and_says_who_answered(
    kube: Kube, cli: Cli, operator: None, tmp_path: Path
) -> None:
    body = json.dumps(SAMPLE)
    # Refused before any model is involved: the route's own 4xx, exit 2.
    code, out, err = cli("predict", "nope", body)
    assert (code, out) == (2, "")
    assert err == f"error: Unknown task type 'nope' (the catalog has: {TASK}, object_tracking)\n"
    code, out, err = cli("predict", TASK, body)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: No model selected for task '{TASK}': select one first")
    # Bad input is refused here, nothing sent.
    code, out, err = cli("predict", TASK, "{not json")
    assert (code, out) == (2, "")
    assert err.startswith("error: the request body is not JSON: ")
    assert cli("predict", TASK)[2].startswith("error: give the request body: ")

    # Selected but not loaded yet: the route holds the request until the model is Ready.
    kube.select(TASK, "tiny-b")
    code, out, err = cli("predict", TASK, body, "--timeout", WAIT_S)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["shape"] == [1, 10] and len(answer["outputs"][0]) == 10
    assert out.startswith("{\n  ")  # indented for people
    [line] = err.splitlines()
    assert re.fullmatch(rf"{TASK}: answered by tiny-b \(pod \S+\), held \d+ ms", line), line

    code, out, err = cli("predict", TASK, "-", "-o", "json", stdin=body + "\n")
    assert code == 0, err
    data = json.loads(out)
    assert (data["task"], data["status"], data["model"], data["switching"]) == (
        TASK,
        200,
        "tiny-b",
        False,
    )
    assert data["pod"] in line and isinstance(data["held_ms"], int)
    assert data["answer"]["shape"] == [1, 10]

    request = tmp_path / "request.json"
    request.write_text(body)
    code, out, err = cli("predict", TASK, f"@{request}", "--raw")
    assert code == 0, err
    assert json.loads(out)["shape"] == [1, 10] and "\n  " not in out  # the pod's bytes

    # The model's own refusals come back as they are (exit 2): a wrong sample...
    code, out, err = cli("predict", TASK, '{"inputs": [[1, 2]]}')
    assert (code, out) == (2, "")
    assert err == "error: each sample must have shape [64], got [2]\n"
    # ...and an image, sent as image/png bytes (not as JSON), which this model does not take.
    image = tmp_path / "frame.png"
    image.write_bytes(PNG)
    code, out, err = cli("predict", TASK, "--image", str(image))
    assert (code, out) == (2, "")
    assert err == 'error: expected {"inputs": [sample, ...]}, a non-empty list\n'
    code, _, err = cli("predict", TASK, body, "--image", str(image))
    assert (code, err) == (2, "error: give a JSON body or --image FILE, not both\n")


# --- pure functions -------------------------------------------------------------------------------


def test_help_lists_the_users_commands_before_the_machinery() -> None:
    text = build_parser().format_help()
    assert "Models:" in text and text.index("Models:") < text.index("(the machinery)")
    assert text.index("  ps ") < text.index("  up ") < text.index("  model-pod ")
    assert "configure(parser)" not in text  # written for users, not contributors
    assert EPILOG in text


def test_exit_codes_and_error_messages_of_http_answers() -> None:
    assert [exit_code_for(s) for s in (400, 401, 404, 409, 500, 503)] == [2, 3, 2, 2, 4, 4]
    assert error_message(400, b'{"error": "Invalid task_type: x"}') == "Invalid task_type: x"
    assert error_message(502, b"<html>Bad gateway</html>") == "HTTP 502: <html>Bad gateway</html>"
    assert error_message(500, b"") == "HTTP 500"


def test_ages_and_gigabytes_read_well() -> None:
    now = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
    assert views.age("2026-01-02T11:59:18Z", now) == "42s ago"
    assert views.age("2026-01-02T11:00:00Z", now) == "1h ago"
    assert views.age("2025-12-30T12:00:00+00:00", now) == "3d ago"
    assert views.age(None, now) is None
    # The one rounding rule (domain/units.py): a tiny size keeps two significant digits.
    assert [views.gb(v) for v in (None, 0.0001, 0.0625, 0.5, 19.2, 102.4, 128.0)] == [
        "-",
        "0.0001",
        "0.06",
        "0.5",
        "19.2",
        "102.4",
        "128.0",
    ]


def test_progress_waits_for_the_operator_to_act_on_the_change() -> None:
    view: dict[str, Any] = {
        "selected": "b",
        "generation": 2,
        "status": {"phase": "Ready", "model": "a", "observedGeneration": 1},
        "load": {"state": "pending", "reason": ""},
    }
    assert views.progress(view, "b") == (
        "pending",
        "Pending: the operator has not acted on the change yet",
    )
    view["status"] = {
        "phase": "Loading",
        "model": "b",
        "observedGeneration": 2,
        "node": "n1",
        "plannedGpuIndex": 0,
        "message": "loading b",
    }
    assert views.progress(view, "b") == ("pending", "Loading · on n1 GPU 0 · loading b")
    view["load"] = {"state": "failed", "reason": "Out of memory"}
    # The API's sentence when it gives one; else the same words, rendered the same way.
    assert views.progress(view, "b") == ("failed", "Failed to load model: Out of memory")
    view["load"]["message"] = "Failed to load model: Out of memory: load failed: CUDA"
    assert views.progress(view, "b") == ("failed", view["load"]["message"])
    assert views.progress({**view, "selected": "c"}, "b")[0] == "failed"


def test_what_if_replaces_selections_and_refuses_unknown_tasks_and_models() -> None:
    before = state([selection("object_detection", "yolov8n")])
    changed = inspect.with_selections(
        before, {"object_detection": "groundingdino", "object_tracking": "samurai"}
    )
    assert changed.by_task["object_detection"].spec.model == "groundingdino"
    assert changed.by_task["object_tracking"].spec.model == "samurai"
    assert changed.by_task["object_detection"].status.phase == "Pending"  # not decided yet
    assert before.by_task["object_detection"].spec.model == "yolov8n"  # the original stays
    with pytest.raises(InvalidTaskType):
        inspect.with_selections(before, {"nope": "x"})
    with pytest.raises(ModelNotFound):
        inspect.with_selections(before, {"object_detection": "nope"})


def test_predict_body_is_json_text_stdin_a_file_or_an_image(tmp_path: Path) -> None:
    def no_stdin() -> str:
        raise AssertionError("stdin read")

    assert request_body('{"inputs": [1]}', None, no_stdin) == (
        b'{"inputs": [1]}',
        "application/json",
    )
    assert request_body("-", None, lambda: '{"a": 1}\n') == (b'{"a": 1}\n', "application/json")
    saved = tmp_path / "body.json"
    saved.write_text('{"b": 2}')
    assert request_body(f"@{saved}", None, no_stdin) == (b'{"b": 2}', "application/json")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    assert request_body(None, str(photo), no_stdin) == (b"\xff\xd8\xff", "image/jpeg")
    assert [image_type(n) for n in ("a.png", "a.webp", "a.bin", "noext")] == [
        "image/png",
        "image/webp",
        "application/octet-stream",
        "application/octet-stream",
    ]
    for body, image, words in (
        ("{oops", None, "the request body is not JSON: "),
        (None, None, "give the request body: "),
        ("{}", str(photo), "give a JSON body or --image FILE, not both"),
        (None, str(tmp_path / "missing.png"), "cannot read the image file "),
        (f"@{tmp_path / 'missing.json'}", None, "cannot read the body file "),
    ):
        with pytest.raises(CliError) as refused:
            request_body(body, image, no_stdin)
        assert refused.value.code == 2 and refused.value.message.startswith(words), body


def test_an_api_that_accepts_but_does_not_answer_is_a_timeout_not_unreachable() -> None:
    with socket.socket() as listening:  # the kernel accepts the connection; nobody answers
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        with pytest.raises(CliError) as silent:
            Api(Target(url, None)).send("/api/models/predict/det", b"{}", "application/json", 0.2)
    assert silent.value.code == 4
    assert silent.value.message == f"{url}/api/models/predict/det gave no answer within 0.2s"


def test_who_answered_reads_the_routes_headers() -> None:
    who = views.answered_by(
        {"x-fovea-model": "yolov8s", "x-fovea-pod": "sel-abc", "x-fovea-held-ms": "1250"}
    )
    assert who == {"model": "yolov8s", "pod": "sel-abc", "held_ms": 1250, "switching": False}
    assert views.answered_line("det", who) == "det: answered by yolov8s (pod sel-abc), held 1250 ms"
    during = views.answered_by({"x-fovea-model": "a", "x-fovea-switching": "true"})
    assert views.answered_line("det", during) == (
        "det: answered by a (pod -), held - (the previous model, during a switch)"
    )
    assert views.prediction("det", 200, who, b"not json")["answer"] == "not json"
    assert views.prediction("det", 200, who, b'{"x": 1}')["answer"] == {"x": 1}
