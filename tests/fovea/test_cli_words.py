"""The command line's words that name the fix (issue 28): where options go, the token, --timeout.

Pure: argv in, the parsed command or the message out; no API is reached.
"""

from __future__ import annotations

import pytest

from fovea.cli import DESCRIPTION, build_parser, hoist, main
from fovea.usercli.client import token_hint
from fovea.usercli.commands import timed_out


@pytest.mark.parametrize(
    ("argv", "hoisted"),
    [
        (["--api", "http://h:1", "ps"], ["ps", "--api", "http://h:1"]),
        (["--api=http://h:1", "list", "-o", "json"], ["list", "--api=http://h:1", "-o", "json"]),
        (
            ["--token", "t", "--api", "http://h:1", "describe", "det"],
            ["describe", "--token", "t", "--api", "http://h:1", "det"],
        ),
        (["ps", "--api", "http://h:1"], ["ps", "--api", "http://h:1"]),  # already after
        (["--api", "http://h:1", "up"], ["--api", "http://h:1", "up"]),  # machinery: unchanged
        (["-o", "json", "ps"], ["-o", "json", "ps"]),  # only --api and --token move
    ],
)
def test_connection_options_may_come_first(argv: list[str], hoisted: list[str]) -> None:
    assert hoist(argv) == hoisted


def test_an_option_before_the_command_parses_as_the_same_command() -> None:
    argv = hoist(["--api", "http://h:1", "ps"])
    args = build_parser("ps").parse_args(argv)
    assert (args.command, args.api) == ("ps", "http://h:1")


def test_an_option_before_the_command_gets_a_hint_not_just_invalid_choice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--output", "json", "ps"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'json'" in err
    assert "an option came before the command: --output; options go after the command" in err
    assert "only --api and --token may come first" in err


def test_a_command_typed_wrong_gets_no_hint_about_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["pss"])
    err = capsys.readouterr().err
    assert "invalid choice: 'pss'" in err and "option came before" not in err


def test_the_help_says_where_options_go() -> None:
    assert "Options go after the command" in DESCRIPTION
    assert "may also come before it (fovea-models --api URL ps)" in DESCRIPTION


def test_a_401_names_the_token_option_and_variable() -> None:
    assert "--token TOKEN or set $FOVEA_API_TOKEN" in token_hint(sent=False)
    assert "--token or $FOVEA_API_TOKEN is not the API's" in token_hint(sent=True)


def test_a_timeout_says_the_selection_stays_and_the_model_still_loads() -> None:
    said = timed_out("det", "yolo", 30, "Loading · on gpu-0")
    assert said.startswith("det: yolo not Ready after 30s (Loading · on gpu-0)")
    assert "the selection stays and the model is still loading" in said
    assert "fovea-models describe det" in said
