"""The user commands: each a `Command` with `configure(parser)` and `run(args) -> int`.

Every command talks to the REST API (`--api URL` / $FOVEA_API, `--token` /
$FOVEA_API_TOKEN); read commands take `--output table|json|yaml`. Exit codes
are `client`'s constants (docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fovea.usercli import output, views
from fovea.usercli.client import (
    DEFAULT_API,
    ENV_API,
    ENV_TOKEN,
    NOT_SO,
    OK,
    REFUSED,
    Api,
    CliError,
    Target,
)
from fovea.usercli.progress import WaitDisplay, stage_of
from fovea.usercli.views import gb, text

POLL_S = 0.5
DEFAULT_WAIT_S = 600.0


@dataclass(frozen=True)
class Command:
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        metavar="URL",
        help=f"the fovea-models API (default: ${ENV_API}, else {DEFAULT_API})",
    )
    parser.add_argument(
        "--token",
        help=f"bearer token, when the API requires one (default: ${ENV_TOKEN})",
    )


def _reader(parser: argparse.ArgumentParser) -> None:
    _connection(parser)
    parser.add_argument(
        "-o",
        "--output",
        choices=output.FORMATS,
        default="table",
        help="table for people (default), json or yaml for programs",
    )


def _handled(body: Callable[[Api, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run `body` with an Api; a CliError becomes one line on stderr and its exit code."""

    def run(args: argparse.Namespace) -> int:
        api = Api(Target.from_args(args.api, args.token))
        try:
            return body(api, args)
        except CliError as exc:
            output.error(exc.message)
            return exc.code
        except KeyboardInterrupt:
            return 130
        finally:
            api.close()

    return run


# --- list ----------------------------------------------------------------------------------------


def _list(api: Api, args: argparse.Namespace) -> int:
    rows = views.catalog_rows(api.get("/api/models/tasks"))
    if args.output != "table":
        output.print_data(rows, args.output)
        return OK
    output.print_table(
        output.console(),
        rows,
        [
            ("TASK", lambda r: r["task"]),
            ("OPTION", lambda r: r["option"] + (" *" if r["selected"] else "")),
            ("FRAMEWORK", lambda r: text(r["framework"])),
            ("MEMORY", lambda r: f"{gb(r['declared_memory_gb'])} GB"),
            ("CPU FALLBACK", lambda r: text(r["cpu_fallback"])),
            ("MODEL ID", lambda r: text(r["model_id"])),
        ],
    )
    return OK


LIST = Command(_reader, _handled(_list))


# --- ps ------------------------------------------------------------------------------------------


def _ps(api: Api, args: argparse.Namespace) -> int:
    tasks = api.get("/api/models/tasks")
    status = api.get("/api/models/status")
    models = views.model_rows(tasks)
    gpus = views.gpu_rows(status, float(tasks["offload_threshold"]))
    if args.output != "table":
        output.print_data({"models": models, "gpus": gpus}, args.output)
        return OK
    out = output.console()
    if models:
        output.print_table(
            out,
            models,
            [
                ("TASK", lambda r: r["task"]),
                ("MODEL", lambda r: text(r["model"])),
                ("PHASE", lambda r: text(r["phase"])),
                ("DEVICE", lambda r: text(r["device"])),
                ("NODE/GPU", _where),
                (
                    "MEMORY (MEASURED/DECLARED)",
                    lambda r: f"{gb(r['measured_memory_gb'])} / {gb(r['declared_memory_gb'])} GB",
                ),
                ("LOAD TIME", lambda r: text(views.seconds(r["load_time_s"]))),
                ("LAST USED", lambda r: text(r["last_used_ago"])),
            ],
        )
    else:
        out.print("no model is loaded or loading")
    for gpu in gpus:
        out.print(views.gpu_line(gpu))
    return OK


def _where(row: dict[str, Any]) -> str:
    if row["node"] is None:
        return "-"
    return row["node"] if row["gpu_index"] is None else f"{row['node']}/{row['gpu_index']}"


PS = Command(_reader, _handled(_ps))


# --- select, load, unload ------------------------------------------------------------------------


def _waiting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="show the load's progress until the model is Ready (exit 0) or fails (exit 1)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help=f"how long --wait waits (default {DEFAULT_WAIT_S:g}); when it runs out the "
        "selection stays and the model keeps loading",
    )


def _configure_select(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", metavar="TASK", help="a task of the catalog (see `list`)")
    parser.add_argument("model", metavar="MODEL", help="one of the task's options")
    _waiting(parser)
    _connection(parser)


def _select(api: Api, args: argparse.Namespace) -> int:
    body = api.post("/api/models/select", task_type=args.task, model_name=args.model)
    print(f"{args.task}: selected {body['selected_model']} ({body['model_id']})")
    return _wait(api, args.task, body["selected_model"], args.timeout) if args.wait else OK


SELECT = Command(_configure_select, _handled(_select))


def _configure_load(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", metavar="TASK", help="a task with a selected model")
    _waiting(parser)
    _connection(parser)


def _load(api: Api, args: argparse.Namespace) -> int:
    body = api.post(f"/api/models/load/{args.task}")
    print(f"{args.task}: load of {body['model_name']} requested ({body['model_id']})")
    return _wait(api, args.task, body["model_name"], args.timeout) if args.wait else OK


LOAD = Command(_configure_load, _handled(_load))


def _configure_unload(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", metavar="TASK", help="a task with a selected model")
    _connection(parser)


def _unload(api: Api, args: argparse.Namespace) -> int:
    body = api.post(f"/api/models/unload/{args.task}")
    print(f"{args.task}: unload of {body['model_name']} requested (the selection stays)")
    return OK


UNLOAD = Command(_configure_unload, _handled(_unload))


def _wait(api: Api, task: str, model: str, timeout_s: float) -> int:
    """Poll the task until the API judges its load ready or failed; progress on stderr."""
    out = output.console(stderr=True)
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    with WaitDisplay(out, f"{task}: {model}") as display:  # fetch, then load (docs/weights.md)
        while True:
            view = _task(api.get("/api/models/tasks"), task)
            state, line = views.progress(view, model)
            elapsed = time.monotonic() - started
            if state == "ready":
                display.done()
                break
            if state == "failed":
                raise CliError(f"{task}: {model}: {line}", NOT_SO)
            display.show(stage_of(view, model), line)
            if time.monotonic() >= deadline:
                raise CliError(timed_out(task, model, timeout_s, line), NOT_SO)
            time.sleep(POLL_S)
    rows = [r for r in views.model_rows({"tasks": {task: view}}) if r["task"] == task]
    where = f" on {_where(rows[0])}, {gb(rows[0]['measured_memory_gb'])} GB" if rows else ""
    print(f"{task}: {model} is Ready{where} (waited {elapsed:.1f}s)")
    return OK


def timed_out(task: str, model: str, timeout_s: float, line: str | None) -> str:
    """--timeout ran out: only the waiting stops; the selection and the load go on."""
    return (
        f"{task}: {model} not Ready after {timeout_s:g}s ({line}); only the wait stopped: "
        f"the selection stays and the model is still loading (see `fovea-models describe {task}`)"
    )


def _task(tasks_body: dict[str, Any], task: str) -> dict[str, Any]:
    view = tasks_body["tasks"].get(task)
    if view is None:
        raise CliError(f"Invalid task_type: {task}", REFUSED)
    return dict(view)


# --- validate ------------------------------------------------------------------------------------


def _configure_validate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what_if",
        nargs="*",
        metavar="TASK=MODEL",
        help="what-if: the budget as if these were selected (nothing is changed)",
    )
    _reader(parser)


def _validate(api: Api, args: argparse.Namespace) -> int:
    for item in args.what_if:
        task, sep, model = item.partition("=")
        if not (sep and task and model):
            raise CliError(f"'{item}' is not TASK=MODEL", REFUSED)
    if args.what_if:
        tasks, models = zip(*(item.split("=", 1) for item in args.what_if), strict=True)
        body = api.post("/api/models/validate", task_type=list(tasks), model_name=list(models))
    else:
        body = api.post("/api/models/validate")
    code = OK if body["valid"] else NOT_SO
    if args.output != "table":
        output.print_data(body, args.output)
        return code
    out = output.console()
    output.print_table(
        out,
        views.budget_rows(body),
        [
            ("TASK", lambda r: r["task"]),
            ("MODEL", lambda r: text(r["model"])),
            ("MEMORY", lambda r: f"{gb(r['vram_gb'])} GB"),
            ("PLACEMENT", lambda r: text(r["outcome"])),
            ("NODE/GPU", _where),
            ("DECIDED BY", lambda r: text(r["decided_by"])),
        ],
    )
    out.print(views.budget_summary(body), style="green" if body["valid"] else "red")
    if (quota := views.quota_line(body)) is not None:
        out.print(quota)
    if args.what_if:
        out.print("what-if: " + ", ".join(args.what_if) + " (nothing was changed)")
    for warning in body.get("warnings", []):
        out.print(f"warning: {warning}", style="yellow")
    return code


VALIDATE = Command(_configure_validate, _handled(_validate))


# --- logs, describe ------------------------------------------------------------------------------


def _configure_logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", metavar="TASK", help="a task whose model has a pod")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    _connection(parser)


def _logs(api: Api, args: argparse.Namespace) -> int:
    params = {"task_type": args.task, "follow": "true" if args.follow else None}
    for chunk in api.stream("/api/models/logs", tail_lines=args.tail, **params):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    return OK


LOGS = Command(_configure_logs, _handled(_logs))


def _configure_describe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", metavar="TASK", help="a task of the catalog")
    _reader(parser)


def _describe(api: Api, args: argparse.Namespace) -> int:
    body = api.get("/api/models/describe", task_type=args.task)
    if args.output != "table":
        output.print_data(body, args.output)
        return OK
    out = output.console()
    output.print_fields(out, views.describe_fields(body))
    conditions = views.condition_rows(body)
    out.print("\nConditions:", style="bold")
    if conditions:
        output.print_table(
            out,
            conditions,
            [(h, _cell(k)) for h, k in _CONDITION_COLUMNS],
        )
    else:
        out.print("  none")
    switch = views.switch_title(body)
    if switch is not None:  # where the last switch's time went (docs/api.md, lastSwitch)
        out.print(f"\nLast switch: {switch}", style="bold")
        output.print_table(
            out, views.switch_rows(body), [(h, _cell(k)) for h, k in _SWITCH_COLUMNS]
        )
    events = views.event_rows(body)
    out.print("\nEvents:", style="bold")
    if body.get("events_error"):
        out.print(f"  {body['events_error']}", style="yellow")
    elif events:
        output.print_table(out, events, [(h, _cell(k)) for h, k in _EVENT_COLUMNS])
    else:
        out.print("  none")
    return OK


_CONDITION_COLUMNS = (
    ("TYPE", "type"),
    ("STATUS", "status"),
    ("REASON", "reason"),
    ("SINCE", "since"),
    ("MESSAGE", "message"),
)
_SWITCH_COLUMNS = (("PHASE", "phase"), ("AT", "at"), ("TOOK", "took"))
_EVENT_COLUMNS = (
    ("LAST SEEN", "last_seen"),
    ("TYPE", "type"),
    ("REASON", "reason"),
    ("OBJECT", "object"),
    ("MESSAGE", "message"),
)


def _cell(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: text(row.get(key))


DESCRIBE = Command(_configure_describe, _handled(_describe))


# --- predict -------------------------------------------------------------------------------------

DEFAULT_PREDICT_TIMEOUT_S = 600.0  # the route holds a request while its model loads


def _configure_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", metavar="TASK", help="a task with a selected model")
    parser.add_argument(
        "body",
        nargs="?",
        metavar="JSON",
        help="the request body: JSON text, '-' to read it from stdin, or @FILE",
    )
    parser.add_argument(
        "--image",
        metavar="FILE",
        help="send this image's bytes as they are, with its content type (instead of JSON)",
    )
    parser.add_argument(
        "--raw", action="store_true", help="print the answer's bytes as the model gave them"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_PREDICT_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to wait for the answer, held time included "
        f"(default {DEFAULT_PREDICT_TIMEOUT_S:g})",
    )
    _reader(parser)


def request_body(
    body: str | None, image: str | None, stdin: Callable[[], str]
) -> tuple[bytes, str]:
    """The bytes to send and their content type; a CliError (nothing sent) when they are wrong."""
    if body is not None and image is not None:
        raise CliError("give a JSON body or --image FILE, not both", REFUSED)
    if image is not None:
        return _read_file(image, "image"), image_type(image)
    if body is None:
        raise CliError(
            "give the request body: JSON text, '-' for stdin, @FILE, or --image FILE", REFUSED
        )
    if body == "-":
        text_body = stdin()
    elif body.startswith("@"):
        text_body = _read_file(body[1:], "body").decode("utf-8", "replace")
    else:
        text_body = body
    try:
        json.loads(text_body)
    except ValueError as exc:
        raise CliError(f"the request body is not JSON: {exc}", REFUSED) from exc
    return text_body.encode(), "application/json"


def image_type(path: str) -> str:
    """The content type of an image by its name; raw bytes when the name says nothing."""
    guessed, _ = mimetypes.guess_type(path)
    return guessed if guessed and guessed.startswith("image/") else "application/octet-stream"


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CliError(
            f"cannot read the {what} file {path}: {exc.strerror or exc}", REFUSED
        ) from exc


def _predict(api: Api, args: argparse.Namespace) -> int:
    body, content_type = request_body(args.body, args.image, sys.stdin.read)
    answer = api.send(f"/api/models/predict/{args.task}", body, content_type, args.timeout)
    who = views.answered_by(answer.headers)
    sys.stderr.write(views.answered_line(args.task, who) + "\n")
    if args.raw:
        sys.stdout.buffer.write(answer.body)
        sys.stdout.flush()
    elif args.output != "table":
        output.print_data(views.prediction(args.task, answer.status, who, answer.body), args.output)
    else:
        try:
            output.print_data(json.loads(answer.body), "json")
        except ValueError:
            sys.stdout.write(answer.body.decode("utf-8", "replace") + "\n")
    return OK


PREDICT = Command(_configure_predict, _handled(_predict))
