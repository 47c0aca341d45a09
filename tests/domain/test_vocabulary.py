"""One vocabulary (issue 24): the words live in domain/conditions.py, the sentences in
domain/messages.py, and the operator, the API, the model pod and the command line
spell no phase, reason or condition status of their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

from fovea.domain import conditions, messages
from fovea.domain.conditions import (
    EVICTED,
    ConditionStatus,
    ConditionType,
    EventType,
    Outcome,
    Phase,
    Reason,
    RuntimeState,
    WeightsPhase,
)

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("operator", "api", "model_pod", "fovea")
VOCABULARY = (Phase, Reason, ConditionStatus, ConditionType, RuntimeState, WeightsPhase, EventType)
WORDS: dict[str, str] = {}
for _enum in reversed(VOCABULARY):  # the first enum that has the word names it
    WORDS.update({m.value: f"{_enum.__name__}.{m.name}" for m in _enum})
# A library's setting that happens to be spelled like a word of ours.
ALLOWED = {("model_pod/adapters/adapter_ultralytics.py", "False")}  # YOLO_VERBOSE=False


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(id(value))
    return found


def literal_words() -> list[str]:
    """`path:line: "Word" (Enum.MEMBER)` for every string literal that is one of our words."""
    out = []
    for component in COMPONENTS:
        for path in sorted((REPO / component).rglob("*.py")):
            relative = str(path.relative_to(REPO))
            tree = ast.parse(path.read_text(), relative)
            docstrings = _docstrings(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value in WORDS
                    and id(node) not in docstrings
                    and (relative, node.value) not in ALLOWED
                ):
                    word = WORDS[node.value]
                    out.append(f"{relative}:{node.lineno}: {node.value!r} (use {word})")
    return out


def test_no_component_spells_a_phase_reason_or_status_of_its_own() -> None:
    assert literal_words() == []


def test_evicted_is_spelled_once() -> None:
    assert Phase.EVICTED == Reason.EVICTED == EVICTED
    assert EVICTED.lower() == Outcome.EVICTED  # the plan's outcomes are all lower case
    spelled = [
        path
        for path in (REPO / "domain").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in (EVICTED, EVICTED.lower())
    ]
    assert spelled == [REPO / "domain" / "conditions.py"]


def test_every_template_says_its_words_and_renders() -> None:
    for failure in messages.LoadFailure:
        text = messages.failure_reason(failure, "details", "warm up")
        assert "details" in text and "\n" not in text
    for reason, template in messages.TEMPLATES.items():
        assert reason in Reason and template.count("{") == template.count("}")
    assert messages.failed_to_load("Out of memory") == "Failed to load model: Out of memory"


def test_the_vocabulary_and_its_sentences_import_only_the_standard_library() -> None:
    """The command line imports them: no pydantic, no kubernetes."""
    for module in (conditions, messages):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            str(node.module).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        assert imported <= {"__future__", "collections", "dataclasses", "enum", "typing", "fovea"}


def test_failed_to_load_is_said_once_whoever_asks_twice() -> None:
    once = messages.failed_to_load("weights are not on disk")
    assert messages.failed_to_load(once) == once
    assert messages.failed_to_load("") == "Failed to load model: unknown reason"
