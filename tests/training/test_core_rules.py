"""The trained RulePolicy does what the rule check (and Rasa) says: no TensorFlow here."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.data.loader import DirectorySource, load_project
from pipeline.errors import TrainingError
from pipeline.rule_check import check_rules, rule_check_options
from pipeline.training.core import TrackerState, train_core
from pipeline.training.core.rules import RuleEntry, RuleState, rasa_key_length
from tests.helpers import write_project
from tests.test_rule_check import CASES, CONFIG, DOMAIN, HANDOFF_RULE


@pytest.fixture(autouse=True)
def no_tensorflow():
    already = "tensorflow" in sys.modules
    yield
    assert already or "tensorflow" not in sys.modules


def load(tmp_path: Path, rules: str, stories: str = ""):
    files = {"config.yml": CONFIG, "domain.yml": DOMAIN, "data/rules.yml": textwrap.dedent(rules).lstrip()}
    if stories:
        files["data/stories.yml"] = textwrap.dedent(stories).lstrip()
    project, _ = load_project(DirectorySource(write_project(tmp_path, files)))
    return project


@pytest.mark.parametrize("rules, stories, expected", CASES)
def test_what_the_check_accepts_trains_and_what_it_refuses_does_not(tmp_path, rules, stories, expected):
    project = load(tmp_path, rules, stories)
    problems = check_rules(project.domain, project.stories, rule_check_options(project.config))
    assert bool(problems) == bool(expected)
    if expected:
        with pytest.raises(TrainingError) as caught:
            train_core(project.domain, project.stories, project.config)
        assert str(caught.value.location) == str(problems[0].location)
        assert problems[0].message in str(caught.value)
    else:
        train_core(project.domain, project.stories, project.config)


def test_rule_beginning_with_an_action_applies_only_after_that_action(tmp_path):
    model = train_core(*_parts(load(tmp_path, HANDOFF_RULE)))
    after = TrackerState().with_user("greet").with_action("action_handoff_options").with_user("trigger_handoff")
    assert model.predict_next_action(after).action == "action_handoff"
    assert model.predict_next_action(TrackerState().with_user("trigger_handoff")).action == "action_default_fallback"
    assert model.predict_next_action(TrackerState().with_user("greet")).action == "action_default_fallback"
    listen = TrackerState().with_user("greet").with_action("action_handoff_options")
    assert model.predict_next_action(listen).action == "action_listen"


def test_slot_null_rule_applies_only_while_the_slot_is_unset(tmp_path):
    model = train_core(*_parts(load(tmp_path, """
        rules:
        - rule: greet unknown
          condition:
          - slot_was_set:
            - name: null
          steps:
          - intent: greet
          - action: utter_greet
        - rule: greet known
          condition:
          - slot_was_set:
            - name: Ann
          steps:
          - intent: greet
          - action: utter_hello
    """)))
    assert model.predict_next_action(TrackerState().with_user("greet")).action == "utter_greet"
    known = TrackerState().with_slot("name", "Bob").with_user("greet")
    assert model.predict_next_action(known).action == "utter_hello"


def test_entity_fills_its_slot_so_a_slot_null_rule_does_not_apply_when_predicting(tmp_path):
    # Rasa's explicit_events set 'city' from the entity in rules and in the conversation alike
    model = train_core(*_parts(load(tmp_path, """
        rules:
        - rule: ask for the city
          condition:
          - slot_was_set:
            - city: null
          steps:
          - intent: inform
          - action: utter_ask
        - rule: city given
          steps:
          - intent: inform
            entities:
            - city: Rome
          - action: utter_submit
    """)))
    with_city = TrackerState().with_user("inform", ["city"])
    assert model.predict_next_action(with_city).action == "utter_submit"
    assert model.predict_next_action(TrackerState().with_user("inform")).action == "utter_ask"
    entry = next(e for e in model.rule_policy.entries if e.action == "utter_submit")
    assert entry.states[-1].slots == (("city", (1.0,)),)


def test_default_intents_run_their_default_action(tmp_path):
    model = train_core(*_parts(load(tmp_path, HANDOFF_RULE)))
    assert model.predict_next_action(TrackerState().with_user("restart")).action == "action_restart"
    assert model.predict_next_action(TrackerState().with_user("session_start")).action == "action_session_start"


def test_rank_is_the_length_of_rasas_key():
    general = RuleEntry((RuleState("action_listen", "greet", None, (), None),), "utter_greet", False, ("a",))
    with_slot = RuleEntry(
        (RuleState("action_listen", "greet", None, (("name", (1.0,)),), None),), "utter_hello", False, ("b",)
    )
    assert rasa_key_length(general.states, False) == len('[{"prev_action": {"action_name": "action_listen"}, '
                                                         '"user": {"intent": "greet"}}]')
    assert with_slot.rank > general.rank


def _parts(project):
    return project.domain, project.stories, project.config


FORM_RULES = """
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
"""


@pytest.mark.parametrize(
    "after_chitchat, expected",
    [
        pytest.param("utter_ask", "utter_ask", id="story-runs-something-else-rules-step-aside"),
        pytest.param("food_form", "food_form", id="story-goes-back-to-the-form"),
    ],
)
def test_general_rule_inside_a_rejected_form_follows_the_stories(tmp_path, after_chitchat, expected):
    """Rasa's loop-unhappy lookup: a general rule's listen becomes the form, unless the stories run another action."""
    stories = f"""
        stories:
        - story: chitchat inside the form
          steps:
          - intent: request_form
          - action: food_form
          - active_loop: food_form
          - intent: chitchat
          - action: utter_chitchat
          - action: {after_chitchat}
    """
    config = CONFIG.replace("- name: RulePolicy\n", "- name: RulePolicy\n- name: MemoizationPolicy\n")
    files = {"config.yml": config, "domain.yml": DOMAIN, "data/rules.yml": FORM_RULES,
             "data/stories.yml": textwrap.dedent(stories).lstrip()}
    project, _ = load_project(DirectorySource(write_project(tmp_path, files)))
    model = train_core(*_parts(project))
    tracker = (
        TrackerState().with_user("request_form").with_action("food_form").with_active_loop("food_form")
        .with_user("chitchat").with_action("utter_chitchat")
    )
    prediction = model.predict_from_states(model.states_for(tracker), loop_rejected=True)
    assert prediction.action == expected
    reloaded = type(model).load(_saved(model, tmp_path))
    assert reloaded.predict_from_states(reloaded.states_for(tracker), loop_rejected=True).action == expected


def _saved(model, tmp_path):
    target = tmp_path / "saved"
    model.save(target)
    return target


def test_rule_listen_dropped_where_a_story_goes_on_as_in_rasa(tmp_path):
    """Rasa learns no "listen after action_handoff_options" when a story goes on after it: memoization decides."""
    stories = """
        stories:
        - story: s1
          steps:
          - intent: greet
          - action: action_handoff_options
          - action: utter_bye
    """
    config = CONFIG.replace("- name: RulePolicy\n", "- name: RulePolicy\n- name: MemoizationPolicy\n")
    files = {"config.yml": config, "domain.yml": DOMAIN, "data/rules.yml": textwrap.dedent(HANDOFF_RULE).lstrip(),
             "data/stories.yml": textwrap.dedent(stories).lstrip()}
    project, _ = load_project(DirectorySource(write_project(tmp_path, files)))
    model = train_core(*_parts(project))
    tracker = TrackerState().with_user("greet").with_action("action_handoff_options")
    assert model.predict_next_action(tracker).action == "utter_bye"
    after = tracker.with_user("trigger_handoff")
    assert model.predict_next_action(after).action == "action_handoff"
