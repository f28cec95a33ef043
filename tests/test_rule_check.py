"""pipeline.rule_check: Rasa's RulePolicy checks on small projects.

Each case was run through Rasa 3.6.21's RulePolicy (bench/rasa_oracle.py) when it
was written: the cases expecting no problem train in Rasa, the others raise
InvalidRule with the same rule and story names.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline.data.loader import DirectorySource, load_project
from pipeline.data.model import SlotDef
from pipeline.rule_check import analyze_rules, build_rule_lookup, check_rules, compute_slot_features, rule_check_options
from pipeline.validation import validate_project
from tests.helpers import write_project

DOMAIN = """\
version: "3.1"
intents: [greet, bye, inform, trigger_handoff, affirm, request_form, chitchat]
entities:
- city:
    roles: [from, to]
- item
slots:
  name: {type: text, mappings: [{type: custom}]}
  city: {type: text, mappings: [{type: from_entity, entity: city}]}
  vip: {type: bool, mappings: [{type: custom}]}
  level: {type: categorical, values: [low, high], mappings: [{type: custom}]}
  cuisine: {type: text, mappings: [{type: from_entity, entity: city, conditions: [{active_loop: food_form}]}]}
  items: {type: list, mappings: [{type: from_entity, entity: item}]}
forms:
  food_form:
    required_slots: [cuisine]
responses:
  utter_greet: [{text: hi}]
  utter_bye: [{text: bye}]
  utter_hello: [{text: hello}]
  utter_ask: [{text: ask}]
  utter_submit: [{text: done}]
  utter_chitchat: [{text: chat}]
  utter_ask_cuisine: [{text: which}]
actions: [action_handoff_options, action_handoff, action_set_vip, action_check]
"""
CONFIG = "language: en\npipeline: []\npolicies:\n- name: RulePolicy\n"

HANDOFF_RULE = """
rules:
- rule: handoff
  steps:
  - action: action_handoff_options
  - intent: trigger_handoff
  - action: action_handoff
"""


def load(tmp_path: Path, rules: str, stories: str = "", config: str = CONFIG):
    files = {"config.yml": config, "domain.yml": DOMAIN, "data/rules.yml": textwrap.dedent(rules).lstrip()}
    if stories:
        files["data/stories.yml"] = textwrap.dedent(stories).lstrip()
    project, _ = load_project(DirectorySource(write_project(tmp_path, files)))
    return project


def check(project):
    return check_rules(project.domain, project.stories, rule_check_options(project.config))


# (rules, stories, expected [(code, file:line, words in the message)])
CASES = [
    pytest.param(
        HANDOFF_RULE,
        """
        stories:
        - story: s1
          steps:
          - intent: trigger_handoff
          - action: utter_bye
        - story: s2
          steps:
          - intent: greet
          - action: utter_greet
          - intent: trigger_handoff
          - action: utter_hello
        """,
        [],
        id="rule-beginning-with-an-action-does-not-apply-to-stories-that-never-run-it",
    ),
    pytest.param(
        HANDOFF_RULE,
        """
        stories:
        - story: s1
          steps:
          - intent: greet
          - action: action_handoff_options
          - action: utter_bye
        """,
        [],
        id="story-going-on-after-the-leading-action-drops-the-rules-listen",
    ),
    pytest.param(
        HANDOFF_RULE,
        """
        stories:
        - story: s1
          steps:
          - intent: greet
          - action: action_handoff_options
          - intent: trigger_handoff
          - action: utter_bye
        """,
        [("rule-story-contradiction", "data/stories.yml:7", "action 'utter_bye' in story 's1' (data/stories.yml:2) "
          "is contradicting with rule(s) 'handoff' (data/rules.yml:2) which predicted action 'action_handoff'")],
        id="rule-beginning-with-an-action-contradicts-a-story-that-runs-it",
    ),
    pytest.param(
        """
        rules:
        - rule: greet unknown
          steps:
          - intent: greet
          - slot_was_set:
            - name: null
          - action: utter_greet
        """,
        """
        stories:
        - story: s1
          steps:
          - intent: inform
          - action: action_check
          - slot_was_set:
            - name: Ann
          - intent: greet
          - action: utter_hello
        """,
        [],
        id="slot-null-step-does-not-contradict-a-story-where-the-slot-is-set",
    ),
    pytest.param(
        """
        rules:
        - rule: greet unknown
          condition:
          - slot_was_set:
            - name: null
          steps:
          - intent: greet
          - action: utter_greet
        """,
        """
        stories:
        - story: s1
          steps:
          - intent: inform
          - action: action_check
          - slot_was_set:
            - name: Ann
          - intent: greet
          - action: utter_hello
        """,
        [],
        id="slot-null-condition-does-not-contradict-a-story-where-the-slot-is-set",
    ),
    pytest.param(
        """
        rules:
        - rule: greet unknown
          condition:
          - slot_was_set:
            - name: null
          steps:
          - intent: greet
          - action: utter_greet
        """,
        """
        stories:
        - story: s1
          steps:
          - intent: greet
          - action: utter_hello
        """,
        [("rule-story-contradiction", "data/stories.yml:5", "'greet unknown' (data/rules.yml:2) which predicted action 'utter_greet'")],
        id="slot-null-condition-contradicts-a-story-where-the-slot-is-not-set",
    ),
    pytest.param(
        """
        rules:
        - rule: no city
          condition:
          - slot_was_set:
            - city: null
          steps:
          - intent: inform
          - action: utter_ask
        """,
        """
        stories:
        - story: s
          steps:
          - intent: inform
            entities:
            - city: Paris
          - action: utter_greet
        """,
        [],
        id="entity-fills-its-slot-so-a-slot-null-rule-does-not-apply",
    ),
    pytest.param(
        """
        rules:
        - rule: high
          condition:
          - slot_was_set:
            - level: high
          steps:
          - intent: greet
          - action: utter_hello
        - rule: low
          condition:
          - slot_was_set:
            - level: low
          steps:
          - intent: greet
          - action: utter_greet
        """,
        """
        stories:
        - story: s
          steps:
          - intent: affirm
          - action: action_check
          - slot_was_set:
            - level: high
          - intent: greet
          - action: utter_hello
        """,
        [],
        id="rules-told-apart-by-a-categorical-condition",
    ),
    pytest.param(
        """
        rules:
        - rule: start
          conversation_start: true
          steps:
          - intent: greet
          - action: utter_hello
        """,
        """
        stories:
        - story: later greet
          steps:
          - intent: bye
          - action: utter_bye
          - intent: greet
          - action: utter_greet
        """,
        [],
        id="conversation-start-rule-does-not-apply-later",
    ),
    pytest.param(
        """
        rules:
        - rule: start
          conversation_start: true
          steps:
          - intent: greet
          - action: utter_hello
        """,
        """
        stories:
        - story: first greet
          steps:
          - intent: greet
          - action: utter_greet
        """,
        [("rule-story-contradiction", "data/stories.yml:5", "story 'first greet'")],
        id="conversation-start-rule-applies-at-the-start",
    ),
    pytest.param(
        """
        rules:
        - rule: r0
          steps:
          - intent: greet
          - action: utter_greet
          wait_for_user_input: false
        """,
        """
        stories:
        - story: s
          steps:
          - intent: greet
          - action: utter_greet
          - action: utter_ask
        """,
        [],
        id="rule-that-does-not-wait-lets-the-story-go-on",
    ),
    pytest.param(
        """
        rules:
        - rule: r0
          steps:
          - intent: greet
          - action: utter_greet
        """,
        """
        stories:
        - story: s
          steps:
          - intent: greet
          - action: utter_greet
          - action: utter_ask
        """,
        [("rule-story-contradiction", "data/stories.yml:6", "'utter_ask' in story 's' (data/stories.yml:2) is "
          "contradicting with rule(s) 'r0' (data/rules.yml:2) which predicted action 'action_listen'")],
        id="rule-that-waits-contradicts-a-story-that-goes-on",
    ),
    pytest.param(
        """
        rules:
        - rule: r0
          steps:
          - intent: greet
          - action: utter_greet
        - rule: r1
          steps:
          - intent: greet
          - action: utter_bye
        """,
        "",
        [
            ("rule-contradiction", "data/rules.yml:5", "'utter_greet' in rule 'r0' (data/rules.yml:2) is contradicting "
             "with rule(s) 'r1' (data/rules.yml:6)"),
            ("rule-contradiction", "data/rules.yml:9", "'utter_bye' in rule 'r1' (data/rules.yml:6) is contradicting "
             "with rule(s) 'r0' (data/rules.yml:2)"),
        ],
        id="two-rules-same-turn-different-action",
    ),
    pytest.param(
        """
        rules:
        - rule: r
          steps:
          - or:
            - intent: greet
            - intent: affirm
          - action: utter_greet
        """,
        """
        stories:
        - story: s
          steps:
          - or:
            - intent: affirm
            - intent: bye
          - action: utter_bye
        - story: later
          steps:
          - checkpoint: c
          - intent: greet
          - action: utter_bye
        - story: before
          steps:
          - intent: inform
          - action: utter_ask
          - checkpoint: c
        """,
        [
            ("rule-story-contradiction", "data/stories.yml:7", "story 's'"),
            ("rule-story-contradiction", "data/stories.yml:12", "story 'before > later'"),
        ],
        id="or-steps-and-checkpoints-are-expanded",
    ),
    pytest.param(
        """
        rules:
        - rule: r
          steps:
          - intent: greet
          - action: utter_greet
        """,
        """
        stories:
        - story: s
          steps:
          - intent: restart
          - action: utter_bye
        """,
        [],
        id="default-intent-restart-is-not-a-rule",
    ),
    pytest.param(
        """
        rules:
        - rule: activate
          steps:
          - intent: request_form
          - action: food_form
          - active_loop: food_form
        - rule: submit
          condition:
          - active_loop: food_form
          steps:
          - action: food_form
          - active_loop: null
          - slot_was_set:
            - requested_slot: null
          - action: utter_submit
        - rule: chitchat
          steps:
          - intent: chitchat
          - action: utter_chitchat
        """,
        """
        stories:
        - story: form with chitchat
          steps:
          - intent: request_form
          - action: food_form
          - active_loop: food_form
          - slot_was_set:
            - requested_slot: cuisine
          - intent: chitchat
          - action: utter_chitchat
          - action: food_form
          - slot_was_set:
            - cuisine: thai
          - slot_was_set:
            - requested_slot: null
          - active_loop: null
          - action: utter_submit
        """,
        [],
        id="form-unhappy-path-back-to-the-form",
    ),
    pytest.param(
        """
        rules:
        - rule: activate
          steps:
          - intent: request_form
          - action: food_form
          - active_loop: food_form
        - rule: chitchat
          steps:
          - intent: chitchat
          - action: utter_chitchat
        """,
        """
        stories:
        - story: chitchat then something else inside the form
          steps:
          - intent: request_form
          - action: food_form
          - active_loop: food_form
          - intent: chitchat
          - action: utter_chitchat
          - action: utter_ask
          - intent: affirm
          - action: food_form
        """,
        [],
        id="general-rule-inside-a-form-steps-aside-where-the-story-runs-another-action",
    ),
    pytest.param(
        """
        rules:
        - rule: activate
          steps:
          - intent: request_form
          - action: food_form
          - active_loop: food_form
        """,
        """
        stories:
        - story: s
          steps:
          - intent: request_form
          - action: food_form
          - active_loop: food_form
          - action: utter_greet
        """,
        [("rule-story-contradiction", "data/stories.yml:7",
          "rule(s) 'handling active loops and forms - food_form - action_listen' which predicted action 'action_listen'")],
        id="active-form-listens-after-running",
    ),
    pytest.param(
        """
        rules:
        - rule: long
          steps:
          - intent: greet
          - action: utter_greet
          - intent: bye
          - action: utter_bye
        """,
        "",
        [("rule-too-long", "data/rules.yml:6", "rule 'long' (data/rules.yml:2) contains 2 user messages")],
        id="rule-with-two-user-messages",
    ),
    pytest.param(
        """
        rules:
        - rule: a
          steps:
          - intent: inform
          - action: action_set_vip
          - slot_was_set:
            - vip: true
          - action: utter_greet
        - rule: b
          steps:
          - intent: greet
          - action: action_set_vip
          - action: utter_hello
        """,
        "",
        [("incomplete-rule", "data/rules.yml:12", "the action 'action_set_vip' in rule 'b' does not set some of the "
          "slots that it sets in other rules: slots not set in rule 'b': 'vip'")],
        id="incomplete-rule",
    ),
    pytest.param(
        HANDOFF_RULE + "- rule: options\n  steps:\n  - intent: bye\n  - action: action_handoff_options\n",
        "stories:\n" + "".join(
            f"- story: s{i}\n  steps:\n  - intent: greet\n  - action: utter_greet\n"
            f"  - intent: {'trigger_handoff' if i % 2 else 'affirm'}\n  - action: utter_ask\n"
            "  - intent: trigger_handoff\n  - action: utter_bye\n"
            for i in range(20)
        ),
        [],
        id="issue-example-handoff-rule-and-twenty-stories-that-never-offer-it",
    ),
    pytest.param(
        """
        rules:
        - rule: to
          steps:
          - intent: inform
            entities:
            - city: Paris
              role: to
          - action: utter_ask
        """,
        """
        stories:
        - story: from
          steps:
          - intent: inform
            entities:
            - city: Rome
              role: from
          - action: utter_greet
        """,
        [],
        id="entity-roles-tell-rule-and-story-apart",
    ),
    pytest.param(
        """
        rules:
        - rule: general
          steps:
          - intent: greet
          - action: utter_greet
        - rule: vip
          condition:
          - slot_was_set:
            - vip: true
          steps:
          - intent: greet
          - action: utter_hello
        """,
        """
        stories:
        - story: vip greet plain
          steps:
          - intent: affirm
          - action: action_set_vip
          - slot_was_set:
            - vip: true
          - intent: greet
          - action: utter_greet
        """,
        [("rule-story-contradiction", "data/stories.yml:9", "'vip' (data/rules.yml:6) which predicted action 'utter_hello'")],
        id="the-more-specific-rule-wins",
    ),
    pytest.param(
        """
        rules:
        - rule: not vip
          condition:
          - slot_was_set:
            - vip: false
          steps:
          - intent: greet
          - action: utter_greet
        """,
        """
        stories:
        - story: vip
          steps:
          - intent: affirm
          - action: action_set_vip
          - slot_was_set:
            - vip: true
          - intent: greet
          - action: utter_hello
        """,
        [],
        id="bool-false-condition-is-not-true",
    ),
    pytest.param(
        """
        rules:
        - rule: no items
          condition:
          - slot_was_set:
            - items: null
          steps:
          - intent: inform
          - action: utter_ask
        """,
        """
        stories:
        - story: items given
          steps:
          - intent: inform
            entities:
            - item: pen
          - action: utter_greet
        """,
        [("rule-story-contradiction", "data/stories.yml:7", "'no items' (data/rules.yml:2)")],
        id="rasa-quirk-list-slot-null-in-a-rule-means-set",
    ),
    pytest.param(
        """
        rules:
        - rule: restart odd
          steps:
          - intent: restart
          - action: utter_bye
        """,
        "",
        [("rule-contradiction", "data/rules.yml:5", "rule(s) 'predicting default action with intent restart' which "
          "predicted action 'action_restart'")],
        id="default-intent-overrules-a-rule",
    ),
    pytest.param(
        """
        rules:
        - rule: activate
          steps:
          - intent: request_form
          - action: food_form
          - active_loop: food_form
        - rule: activate 2
          steps:
          - intent: affirm
          - action: food_form
          - action: utter_ask
        """,
        "",
        [("incomplete-rule", "data/rules.yml:10", "the form 'food_form' in rule 'activate 2' does not set the "
          "'active_loop' that it sets in other rules: 'food_form'")],
        id="incomplete-rule-form-without-active-loop",
    ),
]


@pytest.mark.parametrize("rules, stories, expected", CASES)
def test_rule_check_table(tmp_path: Path, rules: str, stories: str, expected: list[tuple[str, str, str]]) -> None:
    problems = check(load(tmp_path, rules, stories))
    assert all(p.severity == "error" for p in problems)
    assert sorted((p.code, str(p.location)) for p in problems) == sorted((c, w) for c, w, _ in expected), [
        p.render() for p in problems
    ]
    for problem in problems:
        words = next(words for code, where, words in expected if (code, where) == (problem.code, str(problem.location)))
        assert words in problem.message


TWO_RULES = """
rules:
- rule: r0
  steps:
  - intent: greet
  - action: utter_greet
- rule: r1
  steps:
  - intent: greet
  - action: utter_bye
  - intent: bye
  - action: utter_bye
"""


@pytest.mark.parametrize(
    "config, codes",
    [
        pytest.param(CONFIG, {"rule-contradiction", "rule-too-long"}, id="defaults"),
        pytest.param(CONFIG + "  restrict_rules: false\n", {"rule-contradiction"}, id="restrict-rules-off"),
        pytest.param(CONFIG + "  check_for_contradictions: false\n", {"rule-too-long"}, id="contradictions-off"),
        pytest.param("language: en\npipeline: []\npolicies:\n- name: MemoizationPolicy\n", set(), id="no-rule-policy"),
    ],
)
def test_rule_policy_options_decide_what_is_checked(tmp_path: Path, config: str, codes: set[str]) -> None:
    assert {p.code for p in check(load(tmp_path, TWO_RULES, config=config))} == codes


def test_validate_reports_rule_problems_as_errors(tmp_path: Path) -> None:
    problems = validate_project(load(tmp_path, TWO_RULES))
    rule_problems = [p for p in problems if p.code.startswith("rule-")]
    assert rule_problems and all(p.is_error for p in rule_problems)


def test_fallback_prediction_is_not_named_in_the_message(tmp_path: Path) -> None:
    (first, second) = check(load(tmp_path, TWO_RULES, config=CONFIG + "  restrict_rules: false\n"))
    assert "which predicted" not in first.message and "which predicted" not in second.message


@pytest.mark.parametrize(
    "slot, value, features",
    [
        (SlotDef("t", "text"), "x", [1.0]),
        (SlotDef("t", "text"), None, [0.0]),
        (SlotDef("b", "bool"), False, [1.0, 0.0]),
        (SlotDef("b", "bool"), "true", [1.0, 1.0]),
        (SlotDef("c", "categorical", values=("Low", "high")), "LOW", [1.0, 0.0, 0.0]),
        (SlotDef("c", "categorical", values=("low", "high")), "medium", [0.0, 0.0, 1.0]),
        (SlotDef("f", "float", min_value=0.0, max_value=10.0), 5, [1.0, 0.5]),
        (SlotDef("f", "float", min_value=0.0, max_value=10.0), 0, [1.0, 0.0]),
        (SlotDef("l", "list"), ["a"], [1.0]),
        (SlotDef("l", "list"), [], [0.0]),
        (SlotDef("a", "any"), "x", []),
        (SlotDef("n", "text", influence_conversation=False), "x", []),
    ],
)
def test_slot_features_are_rasas(slot: SlotDef, value: object, features: list[float]) -> None:
    assert compute_slot_features(slot, value) == features


def test_lookup_keys_are_the_ones_rasa_learns(tmp_path: Path) -> None:
    """The keys Rasa 3.6.21's RulePolicy stored for these rules (printed from its ``lookup["rules"]``)."""
    project = load(tmp_path, HANDOFF_RULE + "- rule: greet\n  steps:\n  - intent: greet\n  - action: utter_greet\n")
    listen_greet = '{"prev_action": {"action_name": "action_listen"}, "user": {"intent": "greet"}}'
    options = '{"prev_action": {"action_name": "action_handoff_options"}}'
    trigger = '{"prev_action": {"action_name": "action_listen"}, "user": {"intent": "trigger_handoff"}}'
    assert build_rule_lookup(project.domain, project.stories).rules == {
        f"[{listen_greet}]": "utter_greet",
        f'[{listen_greet}, {{"prev_action": {{"action_name": "utter_greet"}}, "user": {{"intent": "greet"}}}}]': "action_listen",
        f"[{options}]": "action_listen",
        f"[{options}, {trigger}]": "action_handoff",
        f'[{options}, {trigger}, {{"prev_action": {{"action_name": "action_handoff"}}, '
        f'"user": {{"intent": "trigger_handoff"}}}}]': "action_listen",
    }


def test_rasa_drops_a_rules_listen_where_a_story_goes_on(tmp_path: Path) -> None:
    """Rasa 3.6.21 trained on these data has no key for "listen after action_handoff_options"."""
    stories = """
        stories:
        - story: s1
          steps:
          - intent: greet
          - action: action_handoff_options
          - action: utter_bye
    """
    project = load(tmp_path, HANDOFF_RULE, stories)
    analysis = analyze_rules(project.domain, project.stories, rule_check_options(project.config))
    assert analysis.problems == ()
    assert analysis.dropped_keys == {'[{"prev_action": {"action_name": "action_handoff_options"}}]'}
