"""pipeline.validation: a table of small projects and the problems each must produce."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping

import pytest

from pipeline.data.loader import DirectorySource, ProjectPaths, load_project
from pipeline.data.model import ActionStep, Config, Domain, IntentDef, NluData, NluExample, Project, Story, UserStep
from pipeline.errors import Location, Problem
from pipeline.validation import has_errors, render_annotation, validate_project
from tests.helpers import write_project

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "assistant"

DOMAIN = textwrap.dedent(
    """\
    version: "3.1"
    intents:
      - greet
      - bye
    entities:
      - city:
          roles: [from, to]
    slots:
      confirmed:
        type: bool
      size:
        type: categorical
        values: [Small, large]
      budget:
        type: float
      city:
        type: text
    forms:
      booking_form:
        required_slots:
          - city
    responses:
      utter_greet:
        - text: Hi!
      utter_bye:
        - text: Bye!
    actions:
      - action_book
    """
)
NLU = """
    version: "3.1"
    nlu:
    - intent: greet
      examples: |
        - hi
        - hello
    - intent: bye
      examples: |
        - bye
        - fly to [Rome]{"entity": "city", "role": "to"} and bye
"""
BASE = {"config.yml": "language: en\n", "domain.yml": DOMAIN, "data/nlu.yml": NLU}

# Snippets for the table, each a file of its own so line numbers stay readable.
NLU_EXTRA_INTENT = """\
nlu:
- intent: ask_time
  examples: |
    - what time is it
    - time please
"""


def stories(*steps: str, name: str = "s") -> str:
    """A stories file with one story; its steps start on line 4."""
    body = "".join(f"  {step}\n" for step in steps)
    return f"stories:\n- story: {name}\n  steps:\n{body}"


def rules(*rules_steps: tuple[str, ...]) -> str:
    """A rules file; rule i (from 0) is named r<i>."""
    text = "rules:\n"
    for index, steps in enumerate(rules_steps):
        text += f"- rule: r{index}\n  steps:\n" + "".join(f"  {step}\n" for step in steps)
    return text


Expected = list[tuple[str, str, str, str]]  # severity, code, "file:line", message fragment

CASES = [
    pytest.param({}, [], id="clean-project"),
    pytest.param(
        {"data/more.yml": NLU_EXTRA_INTENT},
        [("warning", "unknown-intent", "data/more.yml:4", "'ask_time' has NLU examples but is not in the domain")],
        id="nlu-intent-missing-from-domain",
    ),
    pytest.param(
        {"domain.yml": DOMAIN.replace("  - bye\n", "  - bye\n  - thank\n")},
        [("warning", "unused-intent", "domain.yml:5", "'thank' is in the domain but has no NLU examples")],
        id="domain-intent-without-examples",
    ),
    pytest.param(
        {"data/more.yml": "nlu:\n- intent: greet\n  examples: |\n    - hi on [monday](day)\n"},
        [("warning", "unknown-entity", "data/more.yml:4", "entity 'day' is used in examples")],
        id="entity-missing-from-domain",
    ),
    pytest.param(
        {
            "data/more.yml": (
                "nlu:\n- intent: greet\n  examples: |\n"
                '    - hi from [Oslo]{"entity": "city", "role": "via"}\n'
                '    - hi from [Bonn]{"entity": "city", "group": "2"}\n'
            )
        },
        [
            ("warning", "unknown-role", "data/more.yml:4", "role 'via' of entity 'city'"),
            ("warning", "unknown-group", "data/more.yml:5", "group '2' of entity 'city'"),
        ],
        id="role-and-group-not-declared",
    ),
    pytest.param(
        {"data/more.yml": "nlu:\n- intent: bye\n  examples: |\n    - see you\n    -   HELLO  \n"},
        [("warning", "duplicate-example", "data/nlu.yml:6", "under intent 'greet' here and under intent 'bye' (data/more.yml:5)")],
        id="same-text-under-two-intents",
    ),
    pytest.param(
        {"domain.yml": DOMAIN.replace("  - bye\n", "  - bye\n  - thank\n"), "data/more.yml": "nlu:\n- intent: thank\n  examples: |\n    - thanks\n"},
        [("warning", "few-examples", "data/more.yml:4", "intent 'thank' has only 1 example(s)")],
        id="intent-with-one-example",
    ),
    pytest.param(
        {"data/stories.yml": stories("- intent: greet", "- action: utter_greet", "- intent: greeet", "- action: utter_bye")},
        [("error", "unknown-intent", "data/stories.yml:6", "intent 'greeet' in story 's' is not in the domain")],
        id="story-intent-missing",
    ),
    pytest.param(
        {"data/stories.yml": stories("- intent: greet", "- action: utter_hello", "- action: action_pay")},
        [
            ("error", "unknown-action", "data/stories.yml:5", "action 'utter_hello' in story 's'"),
            ("error", "unknown-action", "data/stories.yml:6", "action 'action_pay' in story 's'"),
        ],
        id="story-action-missing",
    ),
    pytest.param(
        {
            "data/rules.yml": (
                "rules:\n- rule: r\n  condition:\n  - slot_was_set:\n    - colour: red\n"
                "  steps:\n  - intent: greet\n  - action: utter_greet\n"
                "  - slot_was_set:\n    - requested_slot: city\n"
            )
        },
        [("error", "unknown-slot", "data/rules.yml:4", "slot 'colour' set in rule 'r' is not in the domain")],
        id="slot-missing-requested-slot-known",
    ),
    pytest.param(
        {"data/stories.yml": stories("- intent: greet", "- action: booking_form", "- active_loop: bookin_form")},
        [("error", "unknown-form", "data/stories.yml:6", "active_loop 'bookin_form' in story 's' is not a form")],
        id="active-loop-form-missing",
    ),
    pytest.param(
        {
            "data/stories.yml": stories(
                "- intent: greet",
                "- slot_was_set:\n    - confirmed: yes\n    - budget: ten\n    - size: medium",
                "- slot_was_set:\n    - confirmed: false\n    - budget: 12.5\n    - size: SMALL\n    - city: null",
                "- action: utter_greet",
            )
        },
        [
            ("warning", "slot-value", "data/stories.yml:5", "slot 'confirmed' in story 's' is set to 'yes', but it is a bool slot"),
            ("warning", "slot-value", "data/stories.yml:5", "slot 'budget' in story 's' is set to 'ten', but it is a float slot"),
        ],
        id="slot-values-of-wrong-type",
    ),
    pytest.param(
        {
            "data/stories.yml": stories(
                "- intent: nlu_fallback",
                "- action: action_default_fallback",
                "- intent: restart",
                "- action: action_restart",
                "- intent: greet",
                "- action: booking_form",
                "- active_loop: booking_form",
                "- slot_was_set:\n    - confirmed\n    - size",
                "- active_loop: null",
                "- bot: Your flight is booked!",
                "- action: action_listen",
                "- intent: out_of_scope",
                "- action: utter_bye",
            )
        },
        [],
        id="defaults-forms-responses-and-bot-text-are-known",
    ),
    pytest.param(
        {
            "data/faq.yml": (
                "nlu:\n- intent: faq/ask_name\n  examples: |\n    - your name?\n    - who are you\n"
                "responses:\n  utter_faq/ask_name:\n    - text: I am a bot.\n"
            ),
            "domain.yml": DOMAIN.replace("  - bye\n", "  - bye\n  - faq\n"),
            "data/stories.yml": stories("- intent: faq", "- action: utter_faq"),
        },
        [],
        id="retrieval-intent-and-its-action",
    ),
    pytest.param(
        {"data/stories.yml": stories("- intent: greet", "- action: utter_greet"), "data/more.yml": NLU_EXTRA_INTENT},
        [("warning", "unknown-intent", "data/more.yml:4", "'ask_time'")],
        id="nlu-only-intent-stays-a-warning-with-stories",
    ),
    pytest.param(
        {
            "data/rules.yml": (
                "rules:\n- rule: plain\n  steps:\n  - intent: greet\n  - action: utter_greet\n"
                "- rule: in form\n  condition:\n  - active_loop: booking_form\n"
                "  steps:\n  - intent: greet\n  - action: booking_form\n  - active_loop: booking_form\n"
                "- rule: goes on\n  wait_for_user_input: false\n  steps:\n  - intent: bye\n  - action: utter_bye\n"
                "- rule: goes on too\n  steps:\n  - intent: bye\n  - action: utter_bye\n  - action: utter_greet\n"
                "  wait_for_user_input: false\n"
            )
        },
        [],
        id="rules-differing-by-condition-or-not-waiting",
    ),
    pytest.param(
        {
            "data/stories.yml": stories("- intent: greet", "- action: utter_greet"),
            "tests/test_stories.yml": stories("- intent: greet", "- action: utter_welcome", name="t"),
        },
        [("error", "unknown-action", "tests/test_stories.yml:5", "action 'utter_welcome' in test story 't'")],
        id="test-story-action-missing",
    ),
    pytest.param(
        {"tests/test_stories.yml": stories("- intent: greet", "- action: utter_welcome", name="t")},
        [("warning", "unknown-action", "tests/test_stories.yml:5", "action 'utter_welcome' in test story 't'")],
        id="test-story-without-training-stories-is-a-warning",
    ),
    pytest.param(
        {"data/stories.yml": stories("- intent: greet\n    entities:\n    - day: monday\n    - city: Oslo\n      role: via", "- action: utter_greet")},
        [
            ("warning", "unknown-entity", "data/stories.yml:4", "entity 'day' is used in story 's'"),
            ("warning", "unknown-role", "data/stories.yml:4", "role 'via' of entity 'city'"),
        ],
        id="story-entities-missing",
    ),
    pytest.param(
        {"domain.yml": DOMAIN.replace("      - city\n", "      - city\n      - seats\n")},
        [("error", "unknown-slot", "domain.yml:22", "form 'booking_form' requires slot 'seats'")],
        id="form-requires-undeclared-slot",
    ),
    pytest.param(
        {
            "domain.yml": None,
            "data/more.yml": NLU_EXTRA_INTENT + "- intent: thank\n  examples: |\n    - thanks\n",
        },
        [("warning", "few-examples", "data/more.yml:8", "intent 'thank' has only 1 example(s)")],
        id="no-domain-means-no-domain-checks",
    ),
]


def validate(tmp_path: Path, overrides: Mapping[str, str | None]) -> tuple[Problem, ...]:
    files = {**BASE, **overrides}
    written = {path: text for path, text in files.items() if text is not None}
    project, _ = load_project(DirectorySource(write_project(tmp_path, written)), ProjectPaths())
    return validate_project(project)


@pytest.mark.parametrize(("overrides", "expected"), CASES)
def test_validation_table(tmp_path: Path, overrides: Mapping[str, str | None], expected: Expected) -> None:
    problems = validate(tmp_path, overrides)
    assert sorted((p.severity, p.code, str(p.location)) for p in problems) == sorted(
        (severity, code, where) for severity, code, where, _ in expected
    ), [p.render() for p in problems]
    for severity, code, where, fragment in expected:
        assert any(
            fragment in p.message for p in problems if (p.severity, p.code, str(p.location)) == (severity, code, where)
        ), (fragment, [p.message for p in problems])
    assert all(p.hint for p in problems)
    assert has_errors(problems) == any(severity == "error" for severity, *_ in expected)


def test_errors_come_first_and_hints_suggest_close_names(tmp_path: Path) -> None:
    problems = validate(
        tmp_path,
        {
            "data/more.yml": NLU_EXTRA_INTENT,
            "data/stories.yml": stories("- intent: greet", "- action: utter_gret"),
        },
    )
    assert [p.severity for p in problems] == ["error", "warning"]
    assert problems[0].hint is not None and "did you mean 'utter_greet'?" in problems[0].hint
    assert "responses:" in problems[0].hint


def test_example_assistant_validates_cleanly() -> None:
    project, _ = load_project(DirectorySource(EXAMPLE), ProjectPaths())
    problems = validate_project(project)
    assert not has_errors(problems)
    assert problems == ()


def test_validates_a_project_built_from_literals() -> None:
    project = Project(
        config=Config(),
        domain=Domain(intents=(IntentDef("greet"),)),
        nlu=NluData((NluExample("hi", "greet"), NluExample("hello", "greet"))),
        stories=(Story("s", (UserStep("greet"), ActionStep("utter_missing"))),),
    )
    (problem,) = validate_project(project)
    assert (problem.severity, problem.code, problem.location) == ("error", "unknown-action", None)


# ---------------------------------------------------------------- annotations


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        pytest.param(
            Problem("error", "intent 'x' is not in the domain", Location("data/stories.yml", 12, 5), "add it"),
            "::error file=data/stories.yml,line=12,col=5,title=deltatrain::intent 'x' is not in the domain%0Afix: add it",
            id="error-with-column",
        ),
        pytest.param(
            Problem("warning", "only 1 example", Location("data/nlu.yml", 3)),
            "::warning file=data/nlu.yml,line=3,title=deltatrain::only 1 example",
            id="warning-without-hint",
        ),
        pytest.param(
            Problem("warning", "100% sure:\r\nyes, really", Location("data/a,b:c%.yml")),
            "::warning file=data/a%2Cb%3Ac%25.yml,title=deltatrain::100%25 sure:%0Ayes, really",
            id="escaping",
        ),
        pytest.param(
            Problem("error", "no training data"),
            "::error title=deltatrain::no training data",
            id="no-location",
        ),
    ],
)
def test_render_annotation(problem: Problem, expected: str) -> None:
    assert render_annotation(problem) == expected


def test_has_errors() -> None:
    warning = Problem("warning", "w")
    assert not has_errors([warning])
    assert not has_errors([])
    assert has_errors([warning, Problem("error", "e")])
