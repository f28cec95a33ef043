"""pipeline.data.loader on real files written into tmp dirs, the YAML inline in each test."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pytest

from pipeline.data.config import NLU_COMPONENTS
from pipeline.data.loader import DirectorySource, ProjectPaths, load_project
from pipeline.data.model import (
    ActionStep,
    ActiveLoopStep,
    CheckpointStep,
    EntitySpan,
    EntityValue,
    OrStep,
    Project,
    SlotStep,
    UserStep,
)
from pipeline.errors import DataError, Location, Problem
from tests.helpers import write_project

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "assistant"

CONFIG = """
    language: en
    pipeline:
      - name: WhitespaceTokenizer
      - name: CountVectorsFeaturizer
      - name: DIETClassifier
    policies:
      - name: RulePolicy
"""
NLU = """
    version: "3.1"
    nlu:
    - intent: greet
      examples: |
        - hi
        - hello
"""


def load(tmp_path: Path, files: Mapping[str, str | bytes]) -> tuple[Project, tuple[Problem, ...]]:
    """Write the files (with a config unless given) and load the project."""
    root = write_project(tmp_path, {"config.yml": CONFIG, **files})
    return load_project(DirectorySource(root), ProjectPaths())


def load_problems(tmp_path: Path, files: Mapping[str, str | bytes]) -> tuple[Problem, ...]:
    """Load a project that must fail; return all its problems."""
    with pytest.raises(DataError) as caught:
        load(tmp_path, files)
    return caught.value.problems


def errors_of(problems: tuple[Problem, ...]) -> list[Problem]:
    return [p for p in problems if p.is_error]


# ----------------------------------------------------------------- formats


def test_reads_a_3_1_project(tmp_path: Path) -> None:
    project, warnings = load(
        tmp_path,
        {
            "domain.yml": """
                version: "3.1"
                intents:
                  - greet
                  - bye
                responses:
                  utter_greet:
                    - text: Hi!
            """,
            "data/nlu.yml": """
                version: "3.1"
                nlu:
                - intent: greet
                  examples: |
                    - hi
                    - hello
                - intent: bye
                  examples: |
                    - bye
                    - see you
            """,
            "data/stories.yml": """
                version: "3.1"
                stories:
                - story: hello
                  steps:
                  - intent: greet
                  - action: utter_greet
            """,
        },
    )
    assert warnings == ()
    assert project.has_domain
    assert project.domain.intent_names == ("greet", "bye")
    assert [(e.text, e.intent) for e in project.nlu.examples] == [
        ("hi", "greet"), ("hello", "greet"), ("bye", "bye"), ("see you", "bye"),
    ]
    assert [e.location for e in project.nlu.examples] == [
        Location("data/nlu.yml", 5), Location("data/nlu.yml", 6),
        Location("data/nlu.yml", 9), Location("data/nlu.yml", 10),
    ]
    assert project.stories[0].steps == (UserStep("greet"), ActionStep("utter_greet"))
    assert project.files == ("config.yml", "data/nlu.yml", "data/stories.yml", "domain.yml")


def test_reads_a_2_0_project(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "domain.yml": """
                version: "2.0"
                intents:
                  - request_table
                slots:
                  people:
                    type: unfeaturized
                forms:
                  table_form:
                    required_slots:
                      people:
                        - type: from_entity
                          entity: number
                templates:
                  utter_ask_people:
                    - text: How many?
            """,
            "data/nlu.yml": """
                version: "2.0"
                nlu:
                - intent: request_table
                  examples: |
                    - a table for [4](number) please
                    - book a table
            """,
        },
    )
    assert project.domain.forms[0].name == "table_form"
    assert project.domain.forms[0].required_slots == ("people",)
    assert project.domain.slots[0].type == "any"  # unfeaturized is Rasa 2.x for "any"
    assert project.domain.slots[0].influence_conversation is False
    assert "utter_ask_people" in project.domain.responses
    assert project.nlu.examples[0].entities == (EntitySpan(12, 13, "number", "4"),)


def test_domain_directory_files_are_merged_first_definition_wins(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "domain/intents.yml": """
                intents:
                  - greet
                responses:
                  utter_greet:
                    - text: first
            """,
            "domain/more/dialogue.yml": """
                intents:
                  - greet
                  - bye
                responses:
                  utter_greet:
                    - text: second
                  utter_bye:
                    - text: Bye
                slots:
                  name:
                    type: text
            """,
            "data/nlu.yml": NLU,
        },
    )
    assert project.has_domain
    assert project.domain.intent_names == ("greet", "bye")
    assert project.domain.responses["utter_greet"][0]["text"] == "first"
    assert set(project.domain.responses) == {"utter_greet", "utter_bye"}
    assert project.domain.slot_names == ("name",)
    assert {"domain/intents.yml", "domain/more/dialogue.yml"} <= set(project.files)


def test_data_is_searched_recursively_and_files_are_told_apart_by_keys(tmp_path: Path) -> None:
    project, warnings = load(
        tmp_path,
        {
            "domain.yml": "intents: [greet, bye]\nresponses:\n  utter_bye:\n    - text: Bye\n",
            "data/nlu/greet.yml": NLU,
            "data/core/deep/flows.yml": """
                stories:
                - story: s
                  steps:
                  - intent: greet
                  - action: utter_bye
                rules:
                - rule: r
                  steps:
                  - intent: bye
                  - action: utter_bye
            """,
            "data/notes.yml": "owner: team-bots\n",
            "data/README.md": "# not training data\n",
        },
    )
    assert project.nlu.intents == ("greet",)
    assert [(s.name, s.kind) for s in project.stories] == [("s", "story"), ("r", "rule")]
    assert [s.name for s in project.rules] == ["r"]
    ignored = [w for w in warnings if w.location == Location("data/notes.yml", 1)]
    assert len(ignored) == 1 and "owner" in ignored[0].message and ignored[0].hint
    assert "data/README.md" not in project.files


def test_project_without_domain_is_nlu_only(tmp_path: Path) -> None:
    project, _ = load(tmp_path, {"data/nlu.yml": NLU})
    assert not project.has_domain
    assert project.domain.is_empty


def test_responses_in_training_data_are_merged_into_the_domain(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "domain.yml": "intents: [faq]\nresponses:\n  utter_greet:\n    - text: Hi\n",
            "data/nlu.yml": """
                nlu:
                - intent: faq/ask_name
                  examples: |
                    - what is your name
                    - who are you
            """,
            "data/responses.yml": """
                version: "3.1"
                responses:
                  utter_faq/ask_name:
                    - text: I am a bot.
            """,
        },
    )
    assert set(project.domain.responses) == {"utter_greet", "utter_faq/ask_name"}


# ------------------------------------------------------------------------ NLU


@pytest.mark.parametrize(
    ("example", "text", "spans"),
    [
        pytest.param("fly to [Berlin](city)", "fly to Berlin", [EntitySpan(7, 13, "city", "Berlin")], id="type"),
        pytest.param(
            "in [NYC](city:New York)", "in NYC", [EntitySpan(3, 6, "city", "New York")], id="type-and-value"
        ),
        pytest.param(
            'from [Rome]{"entity": "city", "role": "from", "group": "1", "value": "ROM"} ok',
            "from Rome ok",
            [EntitySpan(5, 9, "city", "ROM", role="from", group="1")],
            id="json-role-group-value",
        ),
        pytest.param(
            '[Paris][{"entity": "city"}, {"entity": "place", "role": "to"}]',
            "Paris",
            [EntitySpan(0, 5, "city", "Paris"), EntitySpan(0, 5, "place", "Paris", role="to")],
            id="list-of-entities",
        ),
        pytest.param(
            "[2](count) tickets to [Oslo](city)",
            "2 tickets to Oslo",
            [EntitySpan(0, 1, "count", "2"), EntitySpan(13, 17, "city", "Oslo")],
            id="two-annotations",
        ),
    ],
)
def test_entity_annotations(tmp_path: Path, example: str, text: str, spans: list[EntitySpan]) -> None:
    nlu = f"nlu:\n- intent: travel\n  examples: |\n    - {example}\n"
    project, _ = load(tmp_path, {"data/nlu.yml": nlu})
    (parsed,) = project.nlu.examples
    assert parsed.text == text
    assert list(parsed.entities) == spans
    assert parsed.location == Location("data/nlu.yml", 4)


def test_examples_as_a_list_of_text_mappings(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "data/nlu.yml": """
                nlu:
                - intent: greet
                  examples:
                  - text: hi [bot](who)
                    metadata: {sentiment: neutral}
                  - text: |
                      hello there
            """,
        },
    )
    assert [(e.text, e.location) for e in project.nlu.examples] == [
        ("hi bot", Location("data/nlu.yml", 4)),
        ("hello there", Location("data/nlu.yml", 6)),
    ]
    assert project.nlu.examples[0].entities == (EntitySpan(3, 6, "who", "bot"),)


def test_retrieval_intent_is_split_into_intent_and_response_key(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {"data/nlu.yml": "nlu:\n- intent: faq/ask_name\n  examples: |\n    - what is your name\n    - who are you\n"},
    )
    example = project.nlu.examples[0]
    assert (example.intent, example.response_key, example.full_intent) == ("faq", "ask_name", "faq/ask_name")
    assert project.nlu.intents == ("faq",)


def test_synonyms_regexes_and_lookups_inline_and_from_a_file(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "data/nlu.yml": r"""
                nlu:
                - intent: inform
                  examples: |
                    - in [NYC](city)
                    - to [berlin](city)
                - synonym: New York
                  examples: |
                    - NYC
                    - big apple
                - regex: zipcode
                  examples: |
                    - \b\d{5}\b
                - lookup: country
                  examples: |
                    - France
                    - Germany
                - lookup: city
                  examples: lookups/cities.txt
            """,
            "data/lookups/cities.txt": "Berlin\nParis\n\nRome\n",
        },
    )
    nlu = project.nlu
    assert [(s.value, s.examples) for s in nlu.synonyms] == [("New York", ("NYC", "big apple"))]
    assert nlu.synonyms[0].location == Location("data/nlu.yml", 6)
    assert [(r.name, r.patterns) for r in nlu.regexes] == [("zipcode", (r"\b\d{5}\b",))]
    assert [(lk.name, lk.elements) for lk in nlu.lookups] == [
        ("country", ("France", "Germany")),
        ("city", ("Berlin", "Paris", "Rome")),
    ]
    assert nlu.synonym_map()["big apple"] == "New York"


def test_missing_lookup_file_is_an_error_with_line(tmp_path: Path) -> None:
    problems = load_problems(
        tmp_path, {"data/nlu.yml": "nlu:\n- lookup: city\n  examples: lookups/none.txt\n"}
    )
    (error,) = errors_of(problems)
    assert error.location == Location("data/nlu.yml", 3)
    assert "lookups/none.txt" in error.message


# -------------------------------------------------------------- stories/rules


def test_story_steps_of_every_kind(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "data/nlu.yml": NLU,
            "data/stories.yml": """
                stories:
                - story: every step
                  steps:
                  - checkpoint: start
                  - intent: greet
                  - user: |
                      fly to [Rome]{"entity": "city", "role": "to"}
                    intent: book
                  - intent: inform
                    entities:
                    - city: Paris
                    - date
                    - entity: city
                      value: Oslo
                      role: from
                    - city: Bergen
                      role: via
                      group: 2
                  - action: booking_form
                  - active_loop: booking_form
                  - slot_was_set:
                    - city: Paris
                    - confirmed
                    - seats: 2
                  - active_loop: null
                  - or:
                    - intent: affirm
                    - intent: thanks
                  - bot: Have a nice trip!
                  - checkpoint: booked
            """,
        },
    )
    (story,) = project.stories
    assert story.kind == "story" and story.location == Location("data/stories.yml", 2)
    assert story.steps == (
        CheckpointStep("start"),
        UserStep("greet"),
        UserStep("book", "fly to Rome", (EntityValue("city", "Rome", role="to"),)),
        UserStep(
            "inform",
            entities=(
                EntityValue("city", "Paris"),
                EntityValue("date"),
                EntityValue("city", "Oslo", role="from"),
                EntityValue("city", "Bergen", role="via", group="2"),
            ),
        ),
        ActionStep("booking_form"),
        ActiveLoopStep("booking_form"),
        SlotStep((("city", "Paris"), ("confirmed", True), ("seats", 2))),
        ActiveLoopStep(None),
        OrStep((UserStep("affirm"), UserStep("thanks"))),
        ActionStep("Have a nice trip!"),
        CheckpointStep("booked"),
    )
    assert [step.location.line for step in story.steps if step.location] == [
        4, 5, 6, 9, 19, 20, 21, 25, 26, 29, 30,
    ]


def test_rules_with_condition_conversation_start_and_wait_for_user_input(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "data/nlu.yml": NLU,
            "data/rules.yml": """
                rules:
                - rule: welcome
                  conversation_start: true
                  steps:
                  - intent: greet
                  - action: utter_welcome
                - rule: submit form
                  condition:
                  - active_loop: booking_form
                  - slot_was_set:
                    - requested_slot: city
                  steps:
                  - action: booking_form
                  - active_loop: null
                  - action: utter_submit
                  wait_for_user_input: false
            """,
        },
    )
    welcome, submit = project.rules
    assert (welcome.conversation_start, welcome.wait_for_user_input, welcome.condition) == (True, True, ())
    assert welcome.location == Location("data/rules.yml", 2)
    assert submit.condition == (ActiveLoopStep("booking_form"), SlotStep((("requested_slot", "city"),)))
    assert (submit.conversation_start, submit.wait_for_user_input) == (False, False)
    assert submit.steps[-1] == ActionStep("utter_submit")


def test_test_stories_and_test_nlu_come_from_tests_dir(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "data/nlu.yml": NLU,
            "tests/test_stories.yml": """
                stories:
                - story: greet (test)
                  steps:
                  - user: |
                      hello there
                    intent: greet
                  - action: utter_greet
            """,
            "tests/nlu.yml": "nlu:\n- intent: greet\n  examples: |\n    - hey you\n",
        },
    )
    (test_story,) = project.test_stories
    assert test_story.kind == "test"
    assert test_story.steps[0] == UserStep("greet", "hello there")  # the block's newline is stripped
    assert [e.text for e in project.test_nlu.examples] == ["hey you"]
    assert project.stories == ()


# --------------------------------------------------------------------- domain


def test_domain_sections(tmp_path: Path) -> None:
    project, _ = load(
        tmp_path,
        {
            "data/nlu.yml": NLU,
            "domain.yml": """
                version: "3.1"
                intents:
                  - greet:
                      use_entities: [name]
                  - inform:
                      ignore_entities:
                        - date
                  - chitchat:
                      use_entities: false
                  - bye
                entities:
                  - city:
                      roles: [from, to]
                      groups: ["1", "2"]
                  - date
                slots:
                  city:
                    type: text
                    influence_conversation: false
                    mappings:
                      - type: from_entity
                        entity: city
                  vip:
                    type: bool
                    initial_value: false
                  size:
                    type: categorical
                    values: [Small, large]
                  budget:
                    type: float
                    min_value: 0
                    max_value: 500
                  stops:
                    type: list
                  payload:
                    type: any
                responses:
                  utter_greet:
                    - text: Hi {name}!
                    - text: Hello!
                actions:
                  - action_check
                  - validate_booking_form
                forms:
                  booking_form:
                    required_slots:
                      - city
                      - size
                session_config:
                  session_expiration_time: 60
                  carry_over_slots_to_new_session: true
                e2e_actions:
                  - Have a nice trip!
            """,
        },
    )
    domain = project.domain
    assert [(i.name, i.use_entities, i.ignore_entities) for i in domain.intents] == [
        ("greet", ("name",), ()),
        ("inform", None, ("date",)),
        ("chitchat", (), ()),
        ("bye", None, ()),
    ]
    assert domain.intents[0].location == Location("domain.yml", 3)
    assert [(e.name, e.roles, e.groups) for e in domain.entities] == [
        ("city", ("from", "to"), ("1", "2")),
        ("date", (), ()),
    ]
    slots = {s.name: s for s in domain.slots}
    assert {name: s.type for name, s in slots.items()} == {
        "city": "text", "vip": "bool", "size": "categorical", "budget": "float", "stops": "list", "payload": "any",
    }
    assert slots["city"].influence_conversation is False
    assert slots["vip"].influence_conversation is True
    assert slots["payload"].influence_conversation is False
    assert slots["city"].mappings[0]["entity"] == "city"
    assert slots["size"].values == ("small", "large")
    assert (slots["budget"].min_value, slots["budget"].max_value) == (0.0, 500.0)
    assert slots["vip"].initial_value is False
    assert slots["city"].location == Location("domain.yml", 17)
    assert len(domain.responses["utter_greet"]) == 2
    assert domain.actions == ("action_check", "validate_booking_form")
    assert [(f.name, f.required_slots) for f in domain.forms] == [("booking_form", ("city", "size"))]
    assert domain.session_config["session_expiration_time"] == 60
    assert domain.e2e_actions == ("Have a nice trip!",)
    assert {"utter_greet", "action_check", "booking_form", "action_listen"} <= set(domain.action_names)


# --------------------------------------------------------------------- config


@pytest.mark.parametrize("pipeline", ["pipeline: []\n", "pipeline:\n", "pipeline: null\n", ""], ids=["empty", "blank", "null", "absent"])
def test_config_without_pipeline_uses_defaults(tmp_path: Path, pipeline: str) -> None:
    project, _ = load(tmp_path, {"config.yml": "language: en\n" + pipeline, "data/nlu.yml": NLU})
    assert project.config.pipeline_is_default and project.config.policies_is_default
    assert [c.name for c in project.config.pipeline][0] == "WhitespaceTokenizer"
    assert project.config.component("DIETClassifier") is not None
    assert [c.name for c in project.config.policies] == ["MemoizationPolicy", "RulePolicy", "TEDPolicy"]


def test_missing_config_is_a_warning_and_uses_defaults(tmp_path: Path) -> None:
    root = write_project(tmp_path, {"data/nlu.yml": NLU})
    project, warnings = load_project(DirectorySource(root), ProjectPaths())
    assert project.config.pipeline_is_default
    assert [w.location for w in warnings] == [Location("config.yml")]
    assert warnings[0].hint


def test_unknown_component_is_an_error_listing_supported_names(tmp_path: Path) -> None:
    config = """
        pipeline:
          - name: WhitespaceTokenizer
          - name: DIETClasifier
          - name: CountVectorsFeaturizer
    """
    (error,) = errors_of(load_problems(tmp_path, {"config.yml": config, "data/nlu.yml": NLU}))
    assert error.location == Location("config.yml", 3)
    assert "DIETClasifier" in error.message
    assert error.hint is not None
    assert all(name in error.hint for name in NLU_COMPONENTS)


def test_substituted_components_are_warnings_and_never_doubled(tmp_path: Path) -> None:
    config = """
        pipeline:
          - name: HFTransformersNLP
          - name: LanguageModelTokenizer
          - name: CountVectorsFeaturizer
          - name: WhitespaceTokenizer
            intent_tokenization_flag: true
          - name: DIETClassifier
        policies:
          - name: AugmentedMemoizationPolicy
          - name: RulePolicy
    """
    project, warnings = load(tmp_path, {"config.yml": config, "data/nlu.yml": NLU})
    assert [(w.location, w.code) for w in warnings] == [
        (Location("config.yml", 2), "config"),
        (Location("config.yml", 3), "config"),
        (Location("config.yml", 5), "config"),  # intent_tokenization_flag: accepted, not used
        (Location("config.yml", 9), "config"),
    ]
    assert "HFTransformersNLP" in warnings[0].message and "left out" in warnings[0].message
    assert "WhitespaceTokenizer is used instead" in warnings[1].message
    assert all(w.hint for w in warnings)
    # The explicit WhitespaceTokenizer takes the stand-in's place (first), with its own options.
    assert [c.name for c in project.config.pipeline] == ["WhitespaceTokenizer", "CountVectorsFeaturizer", "DIETClassifier"]
    assert project.config.pipeline[0].option("intent_tokenization_flag") is True
    assert [c.name for c in project.config.policies] == ["MemoizationPolicy", "RulePolicy"]


def test_invalid_numeric_options_are_errors_with_line(tmp_path: Path) -> None:
    config = """
        pipeline:
          - name: WhitespaceTokenizer
          - name: DIETClassifier
            epochs: -1
            learning_rate: "fast"
          - name: FallbackClassifier
            threshold: 2
          - name: CountVectorsFeaturizer
        policies:
          - name: TEDPolicy
            epochs: 0
    """
    errors = errors_of(load_problems(tmp_path, {"config.yml": config, "data/nlu.yml": NLU}))
    by_line = {e.location.line or 0: e for e in errors if e.location}
    assert sorted(by_line) == [4, 5, 7]  # epochs: 0 is allowed (disables training)
    assert "epochs" in by_line[4].message and "-1" in by_line[4].message
    assert "learning_rate" in by_line[5].message and "fast" in by_line[5].message
    assert "threshold" in by_line[7].message and ">= 0.0 and <= 1.0" in by_line[7].message
    assert all(e.hint and e.location and e.location.file == "config.yml" for e in errors)


# ------------------------------------------------------------------- errors

NLU_OK = "nlu:\n- intent: greet\n  examples: |\n    - hi\n"

ERROR_TABLE = [
    pytest.param(
        {"data/nlu.yml": "nlu:\n- intent: greet\n  examples: |\n    - hi\n- intent: bye\n  examples: [bye\n"},
        "data/nlu.yml", 6, "YAML syntax error",
        id="yaml-unclosed-bracket",
    ),
    pytest.param(
        {"data/nlu.yml": "nlu:\n- intent: greet\n  examples: |\n    - hi\n- text: x: y\n"},
        "data/nlu.yml", 5, "mapping values are not allowed",
        id="yaml-colon-in-value",
    ),
    pytest.param(
        {"domain.yml": "intents:\n  - greet\n\t- bye\n", "data/nlu.yml": NLU_OK},
        "domain.yml", 3, "YAML syntax error",
        id="tab-indentation",
    ),
    pytest.param(
        {"data/nlu.yml": "nlu:\n- intent: greet\n  examples: 42\n"},
        "data/nlu.yml", 3, "got a number (42)",
        id="examples-is-a-number",
    ),
    pytest.param(
        {"data/rules.yml": "rules:\n- rule: r\n  steps:\n  - intent: greet\n  - bot: hello\n", "data/nlu.yml": NLU_OK},
        "data/rules.yml", 5, "a 'bot' step is not allowed in rule 'r'",
        id="bot-text-in-a-rule",
    ),
    pytest.param(
        {"data/nlu.yml": "nlu:\n- intent: go\n  examples: |\n    - hi\n    - to [Rome]{entity: 'city'}\n"},
        "data/nlu.yml", 5, "not valid JSON",
        id="bad-json-annotation",
    ),
    pytest.param(
        {"domain.yml": "slots:\n  f:\n    type: float\n    min_value: 1\n    max_value: 1\n", "data/nlu.yml": NLU_OK},
        "domain.yml", 2, "min_value 1.0 must be smaller than max_value 1.0",
        id="float-slot-empty-range",
    ),
    pytest.param(
        {"data/nlu.yml": b"nlu:\n- intent: greet\n  examples: |\n    - hi\n    - caf\xe9\n"},
        "data/nlu.yml", 5, "not valid UTF-8",
        id="not-utf8",
    ),
    pytest.param(
        {"domain.yml": "slots:\n  age:\n    type: integer\n", "data/nlu.yml": NLU_OK},
        "domain.yml", 3, "unknown slot type 'integer'",
        id="unknown-slot-type",
    ),
    pytest.param(
        {"domain.yml": "intents:\n  - greet\nresponses:\n  utter_a:\n    - text: a\nintents:\n  - bye\n", "data/nlu.yml": NLU_OK},
        "domain.yml", 6, "duplicate key 'intents' (first defined on line 1)",
        id="duplicate-key",
    ),
    pytest.param(
        {"data/stories.yml": "stories:\n- story: s\n  steps:\n  - intent: greet\n  - actoin: utter_hi\n", "data/nlu.yml": NLU_OK},
        "data/stories.yml", 5, "unknown step",
        id="unknown-story-step",
    ),
    pytest.param(
        {"domain.yml": "slots:\n  size:\n    type: categorical\n    values: small\n", "data/nlu.yml": NLU_OK},
        "domain.yml", 4, "'values' of slot 'size' must be a list",
        id="categorical-values-not-a-list",
    ),
]


@pytest.mark.parametrize(("files", "file", "line", "fragment"), ERROR_TABLE)
def test_errors_name_file_line_and_fix(
    tmp_path: Path, files: Mapping[str, str | bytes], file: str, line: int, fragment: str
) -> None:
    errors = errors_of(load_problems(tmp_path, files))
    assert len(errors) == 1, [e.render() for e in errors]
    (error,) = errors
    assert error.location is not None
    assert (error.location.file, error.location.line) == (file, line)
    assert fragment in error.message
    assert error.hint


def test_yaml_syntax_error_has_column_and_tab_error_says_tabs(tmp_path: Path) -> None:
    syntax = errors_of(load_problems(tmp_path / "a", {"data/nlu.yml": "nlu:\n- text: x: y\n"}))[0]
    assert syntax.location == Location("data/nlu.yml", 2, 10)
    unclosed = errors_of(load_problems(tmp_path / "c", {"data/nlu.yml": "nlu:\n- intent: a\n  examples: [x\n"}))[0]
    assert unclosed.location == Location("data/nlu.yml", 3, 13)  # where the '[' opened, not past the end
    tab = errors_of(load_problems(tmp_path / "b", {"domain.yml": "intents:\n\t- bye\n", "data/nlu.yml": NLU_OK}))[0]
    assert tab.hint == "indent with spaces, not tabs"


def test_every_error_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    problems = load_problems(
        tmp_path,
        {
            "config.yml": "pipeline:\n  - name: Nope\n",
            "domain.yml": "slots:\n  s:\n    type: nope\n",
            "data/nlu.yml": "nlu:\n- intent: [greet]\n",
            "data/stories.yml": "stories:\n- story: s\n  steps: 5\n",
        },
    )
    assert sorted(str(e.location) for e in errors_of(problems)) == [
        "config.yml:2", "data/nlu.yml:2", "data/stories.yml:3", "domain.yml:3",
    ]


def test_no_training_data_is_an_error(tmp_path: Path) -> None:
    (error,) = errors_of(load_problems(tmp_path, {"domain.yml": "intents: [greet]\n"}))
    assert error.location == Location("data") and error.hint


# -------------------------------------------------------------------- example


def test_example_assistant_loads_without_problems() -> None:
    project, warnings = load_project(DirectorySource(EXAMPLE), ProjectPaths())
    assert warnings == ()
    assert project.has_domain
    assert len(project.nlu.intents) == 9
    assert project.rules and project.plain_stories and project.test_stories and project.test_nlu.examples


def test_batch_size_ramp_is_accepted(tmp_path):
    """Rasa's batch-size ramp ``[64, 256]`` is valid; a ramp with a bad value is not."""
    from pipeline.data.loader import DirectorySource, load_project
    from pipeline.errors import DataError
    from tests.helpers import write_project

    nlu = 'version: "3.1"\nnlu:\n- intent: a\n  examples: |\n    - x\n- intent: b\n  examples: |\n    - y\n'
    root = write_project(tmp_path / "ok", {"config.yml": "pipeline:\n- name: DIETClassifier\n  batch_size: [64, 256]\n- name: CountVectorsFeaturizer\n", "data/nlu.yml": nlu})
    project, _ = load_project(DirectorySource(root))
    assert project.config.component("DIETClassifier").option("batch_size") == (64, 256)
    root = write_project(tmp_path / "bad", {"config.yml": "pipeline:\n- name: DIETClassifier\n  batch_size: [64, -1]\n- name: CountVectorsFeaturizer\n", "data/nlu.yml": nlu})
    try:
        load_project(DirectorySource(root))
    except DataError as exc:
        assert any(p.location.line == 3 and "batch_size" in p.message for p in exc.problems)
    else:
        raise AssertionError("a negative batch size must be an error")


def test_english_language_model_in_another_language_is_a_warning_with_its_line(tmp_path: Path) -> None:
    config = "language: de\npipeline:\n  - name: WhitespaceTokenizer\n  - name: LanguageModelFeaturizer\n  - name: DIETClassifier\n"
    project, warnings = load(tmp_path, {"config.yml": config, "data/nlu.yml": NLU})
    [warning] = [w for w in warnings if "English model" in w.message]
    assert warning.location == Location("config.yml", 4) and "remove LanguageModelFeaturizer" in (warning.hint or "")
    assert project.config.component("LanguageModelFeaturizer") is not None
    german_default, warnings = load(tmp_path / "default", {"config.yml": "language: de\n", "data/nlu.yml": NLU})
    assert german_default.config.component("LanguageModelFeaturizer") is None
    assert not [w for w in warnings if "English model" in w.message]
