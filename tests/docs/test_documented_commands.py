"""The README's and docs/cli.md's command lines, run against the local cluster (issue 28).

Every `fovea-models`, `curl` and `kubectl` line of their bash blocks runs against
the real API on a loopback port, the API against the session's cluster with the
demo catalog applied (no operator: nothing loads, so a `--wait` runs with
`--timeout 1` and a `?wait=` with `wait=1`, and their documented timeout answer is
checked). Each output is compared in shape with what the docs print: the table
headers, the GPU line of docs/cli.md, the validate summary, the exit codes of the
exit-code table. A documented line with no shape here fails: a new line in the
docs needs its check, and a change that breaks a documented line fails the suite.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api_server import ApiServer
from fovea.api.settings import Settings
from fovea.domain import crds
from kube_testing import Kube, eventually

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/cli.md")
NUMBER = r"\d+(?:\.\d+)?"
SUMMARY = re.compile(
    rf"^(valid|NOT valid): required {NUMBER} GB of {NUMBER} GB allowed "
    rf"\(\d+% of {NUMBER} GB\)$"
)
TIMED_OUT = re.compile(
    r"^error: \S+: \S+ not Ready after 1s \(.*\); only the wait stopped: the selection "
    r"stays and the model is still loading \(see `fovea-models describe \S+`\)$"
)
Result = tuple[int, str, str]


def documented_lines() -> list[tuple[str, str]]:
    """(file, command line) of every fovea-models, curl and kubectl line in a bash block."""
    found = []
    for name in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", (REPO / name).read_text(), re.S):
            for raw in block.splitlines():
                line = raw.split("  #")[0].strip()
                if line.split(" ", 1)[0] in ("fovea-models", "curl", "kubectl"):
                    found.append((name, line))
    return found


def gpu_line_pattern() -> re.Pattern[str]:
    """docs/cli.md's example GPU line of `ps`, its figures and names made wildcards."""
    text = " ".join((REPO / "docs/cli.md").read_text().split())
    [example] = re.findall(r"`([^`]*used/threshold/total[^`]*)`", text)
    pattern = re.escape(example)
    pattern = pattern.replace(re.escape("fovea-gpu-0/0"), r"\S+/\d+")
    pattern = re.sub(r"\d+(?:\\\.\d+)?", lambda _: NUMBER, pattern)
    pattern = pattern.replace(re.escape("(simulated)"), r"\((simulated|real)\)")
    return re.compile(f"^{pattern}$")


@pytest.fixture
def api(kube: Kube, kubeconfig: str) -> Iterator[ApiServer]:
    demo = (REPO / "manifests" / "catalog" / "demo.yaml").read_text()
    kube.kubectl(["apply", "-n", kube.namespace, "-f", "-"], stdin=demo)
    # A request held for a model (none loads without the operator) is answered after 1 s.
    settings = Settings(kubeconfig=kubeconfig, namespace=kube.namespace, hold_seconds=1)
    server = ApiServer(settings).start()
    server.wait_ready()
    assert eventually(lambda: server.http.get("/api/models/config").status_code == 200, 30)
    yield server
    server.stop()


def run_cli(url: str, args: list[str], cwd: Path) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOVEA_API")}
    done = subprocess.run(
        [sys.executable, "-P", "-m", "fovea.cli", *args, "--api", url],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


# --- the shapes -----------------------------------------------------------------------------


def check_list(code: int, out: str, err: str) -> None:
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == [
        "TASK", "OPTION", "FRAMEWORK", "MEMORY", "CPU", "FALLBACK", "MODEL", "ID"
    ]  # fmt: skip
    row = re.compile(rf"^\S+\s+\S+( \*)?\s+\S+\s+{NUMBER} GB\s+(yes|no)\s+\S+$")
    assert rows and all(row.match(r) for r in rows), rows


def check_ps(code: int, out: str, err: str) -> None:
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "no model is loaded or loading"  # no operator: nothing loads
    gpu = gpu_line_pattern()
    assert lines[1:] and all(gpu.match(line) for line in lines[1:]), lines


def check_wait(started: re.Pattern[str]) -> Callable[[int, str, str], None]:
    def check(code: int, out: str, err: str) -> None:
        assert code == 1  # the exit-code table: not Ready within --timeout
        assert started.match(out.splitlines()[0]), out
        assert TIMED_OUT.match(err.splitlines()[-1]), err

    return check


def check_unload(code: int, out: str, err: str) -> None:
    assert (code, err) == (0, "")
    assert re.match(r"^\S+: unload of \S+ requested \(the selection stays\)$", out.strip())


def check_validate(code: int, out: str, err: str) -> None:
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["TASK", "MODEL", "MEMORY", "PLACEMENT"]
    [summary] = [line for line in lines if SUMMARY.match(line)]
    assert code == (0 if summary.startswith("valid") else 1)  # the exit-code table


def check_what_if(code: int, out: str, err: str) -> None:
    check_validate(code, out, err)
    assert re.search(r"^what-if: \S+=\S+(, \S+=\S+)* \(nothing was changed\)$", out, re.M)


def check_logs(code: int, out: str, err: str) -> None:
    assert (code, out) == (2, "")  # no model pod without the operator: the API's 404
    assert err.startswith("error: ") and err.count("\n") == 1


def check_describe(code: int, out: str, err: str) -> None:
    assert (code, err) == (0, "")
    fields = dict(
        (label.strip(), value.strip())
        for label, _, value in (line.partition(":") for line in out.split("\n\n")[0].splitlines())
    )
    assert {"Task", "Model", "Load policy", "Phase", "Memory"} <= set(fields)
    # The policy in force, never "-": the demo's warmupOnStartup (eager), or onDemand once
    # a documented `unload` ran before.
    assert fields["Load policy"] in ("eager", "onDemand")
    assert re.match(rf"^(-|{NUMBER}) GB measured / {NUMBER} GB declared$", fields["Memory"])


def check_predict(code: int, out: str, err: str) -> None:
    # No operator: no model answers within --timeout 1; one error line, a nonzero exit.
    assert code != 0 and out == ""
    assert err.splitlines()[-1].startswith("error: "), err


CLI_SHAPES: dict[str, Callable[[int, str, str], None]] = {
    "list": check_list,
    "ps": check_ps,
    "select": check_wait(re.compile(r"^\S+: selected \S+ \(.+\)$")),
    "load": check_wait(re.compile(r"^\S+: load of \S+ requested \(.+\)$")),
    "unload": check_unload,
    "validate": check_validate,
    "logs": check_logs,
    "describe": check_describe,
    "predict": check_predict,
}


def check_curl(server: ApiServer, line: str, files: Path) -> None:
    words = shlex.split(line)[1:]
    method, headers, body, urls = "GET", {}, None, []
    while words:
        word, *words = words
        if word == "-X":
            method, *words = words
        elif word == "-H":
            name, _, value = words[0].partition(":")
            headers[name.strip()] = value.strip()
            words = words[1:]
        elif word in ("-d", "--data-binary"):
            data, *words = words
            body = (files / data[1:]).read_bytes() if data.startswith("@") else data.encode()
            method = "POST" if method == "GET" else method
        else:
            urls.append(word)
    [url] = urls
    path = re.sub(r"^(http://)?localhost:3001", "", url)
    timed = "wait=" in path
    path = re.sub(r"wait=\d+", "wait=1", path)
    response = server.http.request(method, path, headers=headers, content=body, timeout=60)
    answer = response.json()
    if path.startswith("/api/models/predict/"):  # no operator: held for 1 s, then 503
        assert response.status_code == 503, answer
        assert "not Ready after" in answer["error"] and answer["phase"], answer
        return
    if timed:  # docs/api.md: a wait that runs out is 503 with the contract's message
        assert (response.status_code, answer) == (
            503,
            {"error": "Model service timeout during model loading"},
        )
        return
    assert response.status_code == 200, answer
    assert isinstance(answer, dict) and "error" not in answer


def check_kubectl(kube: Kube, file: str, line: str) -> None:
    args = shlex.split(line)[1:]
    done = kube.kubectl([*args, "-n", kube.namespace])
    header = done.stdout.splitlines()[0].split()
    version = crds.selection_crd()["spec"]["versions"][0]
    shown = [c for c in version["additionalPrinterColumns"] if not c.get("priority")]
    columns = [c["name"].upper() for c in shown]
    assert header == ["NAME", *columns]
    comment = re.search(re.escape(line) + r" +# (.+)", (REPO / file).read_text())
    assert comment is not None
    assert [c.strip().upper() for c in comment.group(1).split(",")] == columns[:-1]  # not AGE
    rows = done.stdout.splitlines()[1:]
    assert rows and all(len(r.split()) >= 4 for r in rows)


def test_every_documented_command_line_runs_as_documented(
    kube: Kube, api: ApiServer, tmp_path: Path
) -> None:
    # The files the docs' predict lines name.
    (tmp_path / "frame.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(64) + b"\xff\xd9")
    (tmp_path / "request.json").write_text('{"inputs": [[0.0, 1.0]]}')
    lines = documented_lines()
    assert {f for f, _ in lines} == set(DOCS)
    seen: set[str] = set()
    for file, line in lines:
        program, *args = shlex.split(line)
        if program == "curl":
            check_curl(api, line, tmp_path)
        elif program == "kubectl":
            check_kubectl(kube, file, line)
        else:
            command = args[0]
            assert command in CLI_SHAPES, f"{file}: no documented shape for {line!r}"
            if "--wait" in args or command == "predict":
                args = [*args, "--timeout", "1"]
            what_if = command == "validate" and len(args) > 1
            shape = check_what_if if what_if else CLI_SHAPES[command]
            try:
                shape(*run_cli(api.url, args, tmp_path))
            except AssertionError as exc:
                raise AssertionError(f"{file}: {line!r} did not run as documented: {exc}") from exc
            seen.add(command)
    assert seen == set(CLI_SHAPES)  # every people's command is documented and ran


def test_the_gpu_line_pattern_is_the_docs_example() -> None:
    pattern = gpu_line_pattern()
    assert pattern.match("fovea-gpu-1/0: 0.0 / 64.0 / 80.0 GB used/threshold/total (simulated)")
    assert not pattern.match("fovea-gpu-1/0: 0 / 64 / 80 used/threshold/total (simulated)")


def test_the_documented_lines_are_found() -> None:
    lines = documented_lines()
    commands = {shlex.split(line)[1] for _, line in lines if line.startswith("fovea-models ")}
    assert commands == set(CLI_SHAPES)
    assert ("README.md", "kubectl get modelselections") in lines
