"""Dialogue policy without TensorFlow: trackers, story expansion, states, rules,
memoization, contradictions, evaluation reports, save/load, finetune checks.

Every model here uses RulePolicy and MemoizationPolicy only, so nothing imports
TensorFlow; ``test_core_model.py`` trains TEDPolicy.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from pipeline.data.loader import DirectorySource, load_project
from pipeline.data.model import Component, Config, Domain, EntityValue, Project, SlotDef, UserStep
from pipeline.errors import ConfigError, FinetuneRefused, ModelError, TrainingError
from pipeline.training.core import (
    ActionExecuted,
    SlotSet,
    CoreModel,
    TrackerState,
    UserUttered,
    check_finetune_compatible,
    evaluate_stories,
    resolve_settings,
    train_core,
)
from pipeline.training.core.states import DomainSpec, State, replay, replay_turn_by_turn
from pipeline.training.core.stories import expand_stories
from tests.helpers import write_project

DOMAIN = """
    version: "3.1"
    intents:
      - greet
      - goodbye
      - ask_weather
      - bot_challenge
      - book
      - inform
    entities:
      - city:
          roles: [from, to]
    slots:
      destination:
        type: text
        mappings: [{type: from_entity, entity: city}]
      vip:
        type: bool
        mappings: [{type: custom}]
      note:
        type: text
        influence_conversation: false
        mappings: [{type: custom}]
    forms:
      trip_form:
        required_slots: [destination]
    responses:
      utter_greet: [{text: "hi"}]
      utter_goodbye: [{text: "bye"}]
      utter_weather: [{text: "sunny"}]
      utter_iamabot: [{text: "a bot"}]
      utter_hello: [{text: "hello"}]
      utter_ask_destination: [{text: "where?"}]
      utter_booked: [{text: "booked"}]
"""

RULE_MEMO = """
    policies:
      - name: MemoizationPolicy
        max_history: 3
      - name: RulePolicy
"""

STORIES = """
    version: "3.1"
    stories:
    - story: weather
      steps:
      - intent: greet
      - action: utter_greet
      - intent: ask_weather
        entities:
        - city: Rome
      - action: utter_weather
    rules:
    - rule: bot challenge
      steps:
      - intent: bot_challenge
      - action: utter_iamabot
    - rule: goodbye
      steps:
      - intent: goodbye
      - action: utter_goodbye
"""


def load(tmp_path: Path, *, data: str = STORIES, config: str = RULE_MEMO, domain: str = DOMAIN, tests: str | None = None) -> Project:
    files = {"domain.yml": domain, "data/stories.yml": data, "config.yml": config}
    if tests is not None:
        files["tests/test_stories.yml"] = tests
    write_project(tmp_path, files)
    project, _ = load_project(DirectorySource(tmp_path))
    return project


def train(project: Project) -> CoreModel:
    return train_core(project.domain, project.stories, project.config)


@pytest.fixture(autouse=True)
def no_tensorflow():
    """Nothing in this file may import TensorFlow (it would make skip/validate slow).

    Only checkable when no earlier test in this process imported it.
    """
    already = "tensorflow" in sys.modules
    yield
    assert already or "tensorflow" not in sys.modules


# ---------------------------------------------------------------------- trackers


def test_tracker_inserts_action_listen_before_user_turns_after_bot_actions():
    tracker = TrackerState().with_user("greet").with_action("utter_greet").with_user("goodbye", ["city"])
    assert tracker.events == (
        UserUttered("greet"),
        ActionExecuted("utter_greet"),
        ActionExecuted("action_listen"),
        UserUttered("goodbye", (EntityValue("city"),)),
    )
    assert tracker.latest_action == "action_listen"


def test_tracker_takes_user_turns_from_nlu_parse_results():
    parse = {
        "text": "to Rome",
        "intent": {"name": "inform", "confidence": 0.9},
        "entities": [{"entity": "city", "value": "Rome", "role": "to", "start": 3, "end": 7}],
    }
    tracker = TrackerState().with_action("utter_greet").with_parse(parse)
    assert tracker.events[-2:] == (
        ActionExecuted("action_listen"),
        UserUttered("inform", (EntityValue("city", "Rome", "to"),), "to Rome"),
    )
    with pytest.raises(ModelError, match="the NLU parse of None has an 'intent' that is not a mapping"):
        TrackerState().with_parse({"intent": "greet"})


def test_tracker_from_story_steps_matches_turn_by_turn_building(tmp_path):
    project = load(tmp_path)
    story = project.plain_stories[0]
    built = (
        TrackerState().with_user("greet").with_action("utter_greet")
        .with_user("ask_weather", [EntityValue("city", "Rome")]).with_action("utter_weather")
    )
    assert TrackerState.from_steps(story.steps) == built


def test_tracker_from_steps_refuses_or_steps(tmp_path):
    project = load(tmp_path, data="""
        version: "3.1"
        stories:
        - story: either
          steps:
          - or:
            - intent: greet
            - intent: goodbye
          - action: utter_greet
    """)
    with pytest.raises(TrainingError, match="'or' step"):
        TrackerState.from_steps(project.stories[0].steps)


# ------------------------------------------------------------------ story graph


def test_or_steps_expand_into_one_conversation_per_alternative(tmp_path):
    project = load(tmp_path, data="""
        version: "3.1"
        stories:
        - story: either
          steps:
          - or:
            - intent: greet
            - intent: goodbye
          - action: utter_greet
    """)
    graph = expand_stories(project.stories)
    assert [t.events for t in graph.trajectories] == [
        (UserUttered("greet"), ActionExecuted("utter_greet"), ActionExecuted("action_listen")),
        (UserUttered("goodbye"), ActionExecuted("utter_greet"), ActionExecuted("action_listen")),
    ]


def test_checkpoints_join_stories_and_unused_checkpoints_are_reported(tmp_path):
    project = load(tmp_path, data="""
        version: "3.1"
        stories:
        - story: start
          steps:
          - intent: greet
          - action: utter_greet
          - checkpoint: greeted
        - story: then weather
          steps:
          - checkpoint: greeted
          - intent: ask_weather
          - action: utter_weather
        - story: then goodbye
          steps:
          - checkpoint: greeted
          - intent: goodbye
          - action: utter_goodbye
        - story: orphan
          steps:
          - checkpoint: nowhere
          - intent: goodbye
          - action: utter_goodbye
    """)
    graph = expand_stories(project.stories)
    assert sorted(t.name for t in graph.trajectories) == ["start > then goodbye", "start > then weather"]
    joined = next(t for t in graph.trajectories if t.name == "start > then weather")
    assert [e.name for e in joined.events if isinstance(e, ActionExecuted)] == [
        "utter_greet", "action_listen", "utter_weather", "action_listen",
    ]
    assert any("'nowhere'" in w and "never reached" in w for w in graph.warnings)


# ----------------------------------------------------------------------- states


def test_states_featurize_slots_entities_and_forms_as_rasa():
    domain = Domain(
        slots=(
            SlotDef("name", "text"),
            SlotDef("vip", "bool"),
            SlotDef("size", "categorical", values=("Small", "Large")),
            SlotDef("budget", "float", min_value=0.0, max_value=100.0),
            SlotDef("items", "list"),
            SlotDef("note", "text", influence_conversation=False),
        ),
    )
    spec = DomainSpec.from_domain(domain)
    values = {"name": "Ann", "vip": False, "size": "LARGE", "budget": 250, "items": [], "note": "x", "requested_slot": "name"}
    assert dict(spec.featurized_slots(values)) == {
        "name": (1.0,),
        "vip": (1.0, 0.0),
        "size": (0.0, 1.0, 0.0),  # small, large, __other__
        "budget": (1.0, 1.0),  # Rasa's FloatSlot: "is set", then the value capped at max_value
    }
    assert spec.slot("size").featurize("medium") == (0.0, 0.0, 1.0)
    # at min_value the slot is set, not unset (Rasa 3.6 FloatSlot._as_feature)
    assert spec.slot("budget").featurize(0) == (1.0, 0.0) and spec.slot("budget").featurize(None) == (0.0, 0.0)


def test_entities_are_filtered_by_the_intents_use_entities(tmp_path):
    domain = load(tmp_path, domain=DOMAIN.replace("  - greet\n", "  - greet:\n          use_entities: []\n")).domain
    spec = DomainSpec.from_domain(domain)
    city_to = [EntityValue("city", "Rome", role="to")]
    assert spec.featurized_entities("book", city_to) == ("city", "city#to")
    assert spec.featurized_entities("greet", city_to) == ()


def test_state_shows_user_turn_previous_action_slots_and_form(tmp_path):
    spec = DomainSpec.from_domain(load(tmp_path).domain)
    tracker = (
        TrackerState().with_user("book", [EntityValue("city", "Rome", role="to")])
        .with_action("trip_form").with_active_loop("trip_form").with_slot("destination", "Rome")
    )
    played = replay(tracker.events, spec)
    assert played.actions == ("trip_form",)
    assert played.states[0].prev_action == "action_listen" and played.states[0].intent == "book"
    assert played.final.prev_action == "trip_form"
    assert played.final.slots == (("destination", (1.0,)),)
    assert played.final.active_loop == "trip_form"


# ------------------------------------- Rasa's tracker: entity slots, applied events
# Expected states checked against Rasa 3.6.21 (Domain.states_for_tracker_history and
# DialogueStateTracker.applied_events on the same events).

ENTITY_SLOTS = DOMAIN.replace("""      note:""", """      cities:
        type: list
        mappings: [{type: from_entity, entity: city}]
      arrival:
        type: text
        mappings: [{type: from_entity, entity: city, role: to}]
      form_city:
        type: text
        mappings:
        - type: from_entity
          entity: city
          conditions: [{active_loop: trip_form}]
      note:""")


def test_user_turn_entities_fill_their_from_entity_slots_as_rasa_stories_do(tmp_path):
    spec = DomainSpec.from_domain(load(tmp_path, domain=ENTITY_SLOTS).domain)
    plain = TrackerState().with_user("ask_weather", [EntityValue("city", "Rome"), EntityValue("city", "Oslo")])
    played = replay(plain.with_action("utter_weather").events, spec)
    # every mapping without a role matches; a list slot takes all values; a form-only mapping none
    assert played.states[0].slots == (("cities", (1.0,)), ("destination", (1.0,)))
    to_rome = replay(TrackerState().with_user("book", [EntityValue("city", "Rome", role="to")]).events, spec)
    assert to_rome.final.slots == (("arrival", (1.0,)),)
    assert spec.slots_for_entities([EntityValue("city", "Rome"), EntityValue("city", "Oslo")]) == [
        SlotSet("destination", "Oslo"), SlotSet("cities", ["Rome", "Oslo"])
    ]


def test_intent_conditions_of_a_from_entity_mapping_do_not_apply_to_story_states(tmp_path):
    """Rasa 3.6's ``Domain.slots_for_entities`` (training and test trackers) skips only ``active_loop``
    conditions; ``intent``/``not_intent`` count in a live conversation's ``action_extract_slots`` alone
    (checked against Rasa 3.6.21 with bench/states_compat.py: identical examples)."""
    domain = ENTITY_SLOTS.replace(
        "mappings: [{type: from_entity, entity: city, role: to}]",
        "mappings: [{type: from_entity, entity: city, role: to, intent: book}]",
    ).replace(
        "mappings: [{type: from_entity, entity: city}]",
        "mappings: [{type: from_entity, entity: city, not_intent: [ask_weather]}]",
    )
    spec = DomainSpec.from_domain(load(tmp_path, domain=domain).domain)
    weather = TrackerState().with_user("ask_weather", [EntityValue("city", "Rome", role="to")])
    assert replay(weather.events, spec).final.slots == (("arrival", (1.0,)),)
    weather = TrackerState().with_user("ask_weather", [EntityValue("city", "Rome")])
    assert replay(weather.events, spec).final.slots == (("cities", (1.0,)), ("destination", (1.0,)))


def test_entity_slots_are_saved_with_the_vocabulary_and_older_models_load(tmp_path):
    spec = DomainSpec.from_domain(load(tmp_path, domain=ENTITY_SLOTS).domain)
    assert ("arrival", "city", "to", None) in spec.entity_slots
    assert DomainSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    older = {k: v for k, v in spec.to_json().items() if k != "entity_slots"}
    assert DomainSpec.from_json(older).entity_slots == ()


def test_a_story_ending_with_a_user_turn_listens_after_it_as_in_rasa(tmp_path):
    project = load(tmp_path, data="""
        version: "3.1"
        stories:
        - story: greet, then bye
          steps:
          - intent: greet
          - action: utter_greet
          - intent: goodbye
    """)
    (trajectory,) = expand_stories(project.stories).trajectories
    played = replay(trajectory.events, DomainSpec.from_domain(project.domain))
    # Rasa's StoryStep.explicit_events appends a listen unless the last event is one
    assert played.actions == ("utter_greet", "action_listen", "action_listen")
    assert played.states[-1] == State("action_listen", "goodbye", (), (), None)


RESTART_STORY = """
    version: "3.1"
    stories:
    - story: book, give up, restart, greet
      steps:
      - intent: book
        entities:
        - city: Rome
      - action: trip_form
      - active_loop: trip_form
      - intent: goodbye
      - action: action_restart
      - action: restart
      - intent: greet
      - action: utter_greet
"""


def test_a_restart_event_in_a_story_starts_a_fresh_conversation_as_in_rasa(tmp_path):
    """Rasa's reader makes ``- action: restart`` a ``Restarted`` event; examples checked against Rasa 3.6.21."""
    project = load(tmp_path, data=RESTART_STORY, tests=RESTART_STORY)
    spec = DomainSpec.from_domain(project.domain)
    (trajectory,) = expand_stories(project.stories).trajectories
    played = replay(trajectory.events, spec)
    assert played.actions == ("trip_form", "action_listen", "action_restart", "utter_greet", "action_listen")
    before = (("destination", (1.0,)),)
    assert played.history(2) == (
        State("action_listen", "book", ("city",), before, None),
        State("trip_form", "book", ("city",), before, "trip_form"),
        State("action_listen", "goodbye", (), before, "trip_form"),
    )
    # no slot, no form, no history from before the restart; no listen after action_restart
    assert played.history(3) == (State("action_listen", "greet", (), (), None),)
    assert played.history(4) == (*played.history(3), State("utter_greet", "greet", (), (), None))
    assert played.final_history == (*played.history(4), State("action_listen", "greet", (), (), None))
    assert played.event_index[3] == trajectory.events.index(ActionExecuted("utter_greet"))
    (test,) = expand_stories(project.test_stories).trajectories
    turn_by_turn = replay_turn_by_turn(test.events, spec)
    assert [turn_by_turn.history(k) for k in range(5)] == [played.history(k) for k in range(5)]
    assert train(project).predict_next_action(TrackerState().with_user("greet")).action == "utter_greet"


FORM_HAPPY = (
    TrackerState().with_user("book").with_action("trip_form").with_active_loop("trip_form")
    .with_user("inform", [EntityValue("city", "Rome")]).with_action("trip_form").with_active_loop(None)
    .with_action("utter_booked")
)


def test_form_happy_path_turns_are_undone_as_rasas_applied_events(tmp_path):
    spec = DomainSpec.from_domain(load(tmp_path).domain)
    played = replay(FORM_HAPPY.events, spec)
    # the form handled 'inform': the listen, the user turn and the form's re-run are gone,
    # the slot its entity filled stays, and the latest user message is 'book' again
    assert played.actions == ("trip_form", "utter_booked")
    assert played.states[1] == State("trip_form", "book", (), (("destination", (1.0,)),), None)
    assert played.event_index == (1, 7)


def test_unhappy_path_and_a_restarted_form_keep_every_turn(tmp_path):
    spec = DomainSpec.from_domain(load(tmp_path).domain)
    unhappy = (
        TrackerState().with_user("book").with_action("trip_form").with_active_loop("trip_form")
        .with_user("bot_challenge").with_action("utter_iamabot").with_action("trip_form")
    )
    assert replay(unhappy.events, spec).actions == ("trip_form", "action_listen", "utter_iamabot", "trip_form")
    again = (
        TrackerState().with_user("book").with_action("trip_form").with_active_loop("trip_form").with_active_loop(None)
        .with_action("utter_booked").with_user("book").with_action("trip_form")
    )
    assert replay(again.events, spec).actions == ("trip_form", "utter_booked", "action_listen", "trip_form")


def test_a_test_predicts_each_action_from_the_conversation_so_far(tmp_path):
    spec = DomainSpec.from_domain(load(tmp_path).domain)
    walked = replay_turn_by_turn(FORM_HAPPY.events, spec)
    assert walked.actions == ("trip_form", "action_listen", "trip_form", "utter_booked")
    # the re-run is predicted with the user turn still there; what follows, as in training
    assert walked.history(2)[-1] == State("action_listen", "inform", ("city",), (("destination", (1.0,)),), "trip_form")
    assert walked.history(3) == replay(FORM_HAPPY.events, spec).history(1)
    plain = TrackerState().with_user("greet").with_action("utter_greet").with_user("goodbye").with_action("utter_goodbye")
    assert replay_turn_by_turn(plain.events, spec) == replay(plain.events, spec)


def test_a_story_after_the_forms_happy_path_is_recalled_in_training_in_tests_and_live(tmp_path):
    form_story = """
        version: "3.1"
        stories:
        - story: book
          steps:
          - intent: book
          - action: trip_form
          - active_loop: trip_form
          - intent: inform
            entities:
            - city: Rome
          - action: trip_form
          - active_loop: null
          - action: utter_booked
    """
    project = load(tmp_path, data=form_story, tests=form_story)
    model = train(project)
    # the form's re-run is no training example: RulePolicy's happy path predicts it
    filling = TrackerState(FORM_HAPPY.events[:5])
    assert model.memoization_policy.recall(model.states_for(filling)) is None
    assert model.predict_next_action(filling).action == "trip_form"
    live = FORM_HAPPY.events[:-1]
    prediction = model.predict_next_action(TrackerState(live))
    assert (prediction.action, prediction.policy) == ("utter_booked", "MemoizationPolicy")
    evaluation = evaluate_stories(model, project.test_stories)
    assert evaluation.failed == [] and evaluation.num_correct == 1


# ------------------------------------------------------------ rules and memory


def test_rules_and_memoization_predict_with_confidence_one(tmp_path):
    model = train(load(tmp_path))
    prediction = model.predict_next_action(TrackerState().with_user("greet").with_action("utter_greet").with_user("bot_challenge"))
    assert (prediction.action, prediction.confidence, prediction.policy) == ("utter_iamabot", 1.0, "RulePolicy")
    after = model.predict_next_action(TrackerState().with_user("greet"))
    assert (after.action, after.confidence, after.policy) == ("utter_greet", 1.0, "MemoizationPolicy")
    listen = model.predict_next_action(TrackerState().with_user("goodbye").with_action("utter_goodbye"))
    assert (listen.action, listen.policy) == ("action_listen", "RulePolicy")


def test_unknown_history_falls_back_with_the_threshold_as_confidence(tmp_path):
    model = train(load(tmp_path, config=RULE_MEMO + "        core_fallback_threshold: 0.4\n"))
    prediction = model.predict_next_action(TrackerState().with_user("inform"))
    assert (prediction.action, prediction.confidence, prediction.policy) == ("action_default_fallback", 0.4, "RulePolicy")


def test_memoization_forgets_histories_seen_with_two_different_actions(tmp_path):
    model = train(load(tmp_path, config="policies:\n  - name: MemoizationPolicy\n", data="""
        version: "3.1"
        stories:
        - story: one
          steps:
          - intent: greet
          - action: utter_greet
        - story: two
          steps:
          - intent: greet
          - action: utter_hello
    """))
    assert model.memoization_policy.recall(model.states_for(TrackerState().with_user("greet"))) is None
    assert model.predict_next_action(TrackerState().with_user("greet")).policy == "none"


def test_form_happy_path_runs_the_active_form_and_then_listens(tmp_path):
    model = train(load(tmp_path, data=STORIES + """
    - rule: start the form
      steps:
      - intent: book
      - action: trip_form
      - active_loop: trip_form
    - rule: submit the form
      condition:
      - active_loop: trip_form
      steps:
      - action: trip_form
      - active_loop: null
      - slot_was_set:
        - requested_slot: null
      - action: utter_booked
    """))
    started = TrackerState().with_user("book").with_action("trip_form").with_active_loop("trip_form")
    assert model.predict_next_action(started).action == "action_listen"
    filling = started.with_user("inform", [EntityValue("city", "Rome")])
    assert model.predict_next_action(filling).action == "trip_form"
    done = filling.with_action("trip_form").with_slot("destination", "Rome").with_active_loop(None)
    assert model.predict_next_action(done).action == "utter_booked"


def test_conversation_start_rules_apply_only_at_the_start(tmp_path):
    model = train(load(tmp_path, data="""
        version: "3.1"
        rules:
        - rule: welcome
          conversation_start: true
          steps:
          - intent: greet
          - action: utter_hello
    """))
    assert model.predict_next_action(TrackerState().with_user("greet")).action == "utter_hello"
    later = TrackerState().with_user("goodbye").with_action("utter_goodbye").with_user("greet")
    assert model.predict_next_action(later).action == "action_default_fallback"


def test_rule_slot_conditions_and_null_values(tmp_path):
    model = train(load(tmp_path, data="""
        version: "3.1"
        rules:
        - rule: greet a vip
          condition:
          - slot_was_set:
            - vip: true
          steps:
          - intent: greet
          - action: utter_hello
        - rule: greet someone else
          condition:
          - slot_was_set:
            - vip: null
          steps:
          - intent: greet
          - action: utter_greet
    """))
    assert model.predict_next_action(TrackerState().with_slot("vip", True).with_user("greet")).action == "utter_hello"
    assert model.predict_next_action(TrackerState().with_user("greet")).action == "utter_greet"


# --------------------------------------------------------------- contradictions


def test_contradicting_rules_are_reported_with_names_and_locations(tmp_path):
    project = load(tmp_path, data="""
        version: "3.1"
        rules:
        - rule: greet back
          steps:
          - intent: greet
          - action: utter_greet
        - rule: say hello
          steps:
          - intent: greet
          - action: utter_hello
    """)
    with pytest.raises(TrainingError) as caught:
        train(project)
    message = str(caught.value)
    assert "contradicting or incomplete rules found (2)" in message
    assert (
        "- data/stories.yml:10: the prediction of the action 'utter_hello' in rule 'say hello' (data/stories.yml:7) "
        "is contradicting with rule(s) 'greet back' (data/stories.yml:3)"
    ) in message
    assert str(caught.value.location) == "data/stories.yml:6"


def test_story_continuing_after_a_rule_contradicts_unless_the_rule_does_not_wait(tmp_path):
    data = """
        version: "3.1"
        stories:
        - story: greet and ask
          steps:
          - intent: greet
          - action: utter_greet
          - action: utter_ask_destination
        rules:
        - rule: greet back
          steps:
          - intent: greet
          - action: utter_greet
    """
    with pytest.raises(TrainingError, match=r"data/stories.yml:7: the prediction of the action 'utter_ask_destination' in story 'greet and ask'"):
        train(load(tmp_path, data=data))
    fixed = data + "      wait_for_user_input: false\n"
    model = train(load(tmp_path, data=fixed))
    assert model.summary["rule_entries"] == 1


def test_contradiction_check_can_be_disabled(tmp_path):
    project = load(tmp_path, config=RULE_MEMO + "        check_for_contradictions: false\n", data="""
        version: "3.1"
        rules:
        - rule: a
          steps:
          - intent: greet
          - action: utter_greet
        - rule: b
          steps:
          - intent: greet
          - action: utter_hello
    """)
    # training goes on, and as in Rasa two rules with the same states and different actions give no rule
    assert train(project).predict_next_action(TrackerState().with_user("greet")).action == "action_default_fallback"


@pytest.mark.parametrize(
    "step, message",
    [
        ("- action: utter_missing", "action 'utter_missing' is not in the domain"),
        ("- intent: shout", "intent 'shout' is not in the domain"),
        ("- slot_was_set:\n            - colour: red", "slot 'colour' is not in the domain"),
        ("- active_loop: other_form", "active_loop 'other_form' is not a form in the domain"),
    ],
    ids=["action", "intent", "slot", "form"],
)
def test_names_missing_from_the_domain_raise_training_error_with_location(tmp_path, step, message):
    project = load(tmp_path, data=f"""
        version: "3.1"
        stories:
        - story: broken
          steps:
          - intent: greet
          {step}
    """)
    with pytest.raises(TrainingError) as caught:
        train(project)
    assert message in str(caught.value)
    assert "'broken' (data/stories.yml:" in str(caught.value)
    assert str(caught.value.location).startswith("data/stories.yml:")


# ---------------------------------------------------------------------- settings


def test_default_policies_are_rasas_and_unknown_options_are_refused():
    settings = resolve_settings(Config())
    assert [p.name for p in settings.policies] == ["MemoizationPolicy", "RulePolicy", "TEDPolicy"]
    assert (settings.ted.max_history, settings.ted.epochs) == (5, 100)
    ignored = resolve_settings(Config(policies=(Component("TEDPolicy", {"epochs": 3, "use_gpu": True}),)))
    assert ignored.ignored == ("TEDPolicy.use_gpu",)
    with pytest.raises(ConfigError, match="unknown option 'epoch'; valid options are .*received epoch=3"):
        resolve_settings(Config(policies=(Component("TEDPolicy", {"epoch": 3}),)))
    with pytest.raises(ConfigError, match="unknown policy 'FormPolicy'"):
        resolve_settings(Config(policies=(Component("FormPolicy", {}),)))


# -------------------------------------------------------------------- save/load


def test_save_and_load_give_identical_predictions(tmp_path):
    model = train(load(tmp_path / "project"))
    model.save(tmp_path / "model")
    loaded = CoreModel.load(tmp_path / "model")
    trackers = [
        TrackerState().with_user("greet"),
        TrackerState().with_user("greet").with_action("utter_greet").with_user("bot_challenge"),
        TrackerState().with_user("inform"),
    ]
    assert [loaded.predict_next_action(t) for t in trackers] == [model.predict_next_action(t) for t in trackers]
    assert loaded.summary == json.loads(json.dumps(model.summary))


def test_loading_a_broken_model_raises_model_error(tmp_path):
    train(load(tmp_path / "project")).save(tmp_path / "model")
    (tmp_path / "model" / "rules.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="rules.json cannot be read"):
        CoreModel.load(tmp_path / "model")
    with pytest.raises(ModelError, match="no dialogue model directory"):
        CoreModel.load(tmp_path / "nowhere")


# ------------------------------------------------------------- finetune checks


def test_finetune_is_refused_with_every_reason(tmp_path):
    project = load(tmp_path / "project")
    train(project).save(tmp_path / "model")
    check_finetune_compatible(tmp_path / "model", project.domain, project.config)  # unchanged: fine
    changed = load(
        tmp_path / "changed",
        domain=DOMAIN.replace("  - inform\n", "  - inform\n      - thank\n").replace("  utter_booked:", "  utter_thanks: [{text: ok}]\n      utter_booked:"),
        config="policies:\n  - name: RulePolicy\n",
    )
    with pytest.raises(FinetuneRefused) as caught:
        check_finetune_compatible(tmp_path / "model", changed.domain, changed.config)
    assert caught.value.reasons == (  # the added intent alone would be grown (see test_evolve)
        "action 'utter_thanks' added to the domain",
        "policies changed from MemoizationPolicy, RulePolicy to RulePolicy",
    )
    with pytest.raises(FinetuneRefused, match="no dialogue model in .* \\(format.json is missing\\)"):
        check_finetune_compatible(tmp_path / "nothing", project.domain, project.config)


# -------------------------------------------------------------------- evaluation

TEST_STORIES = """
    version: "3.1"
    stories:
    - story: weather (test)
      steps:
      - user: |
          hello
        intent: greet
      - action: utter_greet
      - user: |
          weather in [Rome](city)?
        intent: ask_weather
      - action: utter_weather
    - story: wrong ending
      steps:
      - intent: greet
      - action: utter_greet
      - intent: ask_weather
        entities:
        - city: Rome
      - action: utter_goodbye
"""


def test_story_evaluation_reports_stories_actions_and_failed_stories(tmp_path):
    project = load(tmp_path, tests=TEST_STORIES)
    evaluation = evaluate_stories(train(project), project.test_stories)
    assert (evaluation.num_stories, evaluation.num_correct, evaluation.accuracy) == (2, 1, 0.5)
    report = evaluation.action_report
    assert report["utter_weather"]["support"] == 1 and report["utter_weather"]["precision"] == 0.5
    assert report["utter_goodbye"]["recall"] == 0.0
    assert report["conversation_accuracy"] == {"accuracy": 0.5, "correct": 1, "with_warnings": 0, "total": 2}
    assert {"accuracy", "macro avg", "weighted avg", "micro avg"} <= set(report)
    assert evaluation.render_failed_stories_yaml() == (
        'version: "3.1"\n'
        "stories:\n"
        "- story: wrong ending (tests/test_stories.yml)\n"
        "  steps:\n"
        "  - intent: greet\n"
        "  - action: utter_greet\n"
        "  - intent: ask_weather\n"
        "    entities:\n"
        "    - city: Rome\n"
        "  - action: utter_goodbye  # predicted: utter_weather\n"
        "  - action: action_listen  # predicted: action_default_fallback\n"
    )
    assert yaml.safe_load(evaluation.render_failed_stories_yaml())["stories"][0]["steps"][3] == {"action": "utter_goodbye"}
    junit = ET.fromstring(evaluation.render_junit_xml())
    cases = junit.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["weather (test)", "wrong ending"]
    failure = cases[1].find("failure")
    assert "action 'utter_goodbye' expected, predicted 'utter_weather' by MemoizationPolicy" in failure.get("message")
    assert json.loads(json.dumps(evaluation.to_dict()))["failed"][0]["name"] == "wrong ending"


def test_end_to_end_evaluation_fails_on_wrong_intents_and_goes_on_with_the_storys_intent(tmp_path):
    project = load(tmp_path, tests=TEST_STORIES)
    texts = []

    def parse(text):
        texts.append(text)
        if text.startswith("weather"):
            return {"intent": {"name": "goodbye", "confidence": 0.6}, "entities": [{"entity": "city", "value": "Rome"}]}
        return {"intent": {"name": "greet", "confidence": 0.9}, "entities": []}

    evaluation = evaluate_stories(train(project), project.test_stories, parse=parse)
    assert texts == ["hello", "weather in Rome?"]
    assert evaluation.num_correct == 0
    rendered = evaluation.render_failed_stories_yaml()
    assert "  - intent: ask_weather  # predicted: goodbye: weather in [Rome](city)?\n    entities:\n    - city: Rome\n" in rendered
    # as Rasa's WronglyClassifiedUserUtterance: the story's own intent drives the dialogue on
    assert "  - action: utter_weather\n" in rendered
    assert "  - action: utter_goodbye  # predicted: utter_weather\n" in rendered
    assert yaml.safe_load(rendered)["stories"][0]["steps"][2] == {"intent": "ask_weather", "entities": [{"city": "Rome"}]}
    with pytest.raises(ModelError, match="the NLU parse of 'hello' is not a mapping"):
        evaluate_stories(train(project), project.test_stories, parse=lambda text: "greet")


@pytest.mark.parametrize(
    "found, passes",
    [
        pytest.param([{"entity": "city", "value": "Rome", "extractor": "DIETClassifier"}], True, id="same-entity"),
        pytest.param([{"entity": "city", "value": "Rome", "role": "to"}], True, id="roles-not-compared-as-rasa"),
        pytest.param([], False, id="entity-missed"),
        pytest.param([{"entity": "city", "value": "Rome"}, {"entity": "number", "value": 2}], False, id="extra-entity"),
    ],
)
def test_end_to_end_evaluation_fails_on_other_entities_as_rasa(tmp_path, found, passes):
    project = load(tmp_path, tests=TEST_STORIES.split("    - story: wrong ending")[0])

    def parse(text):
        intent = "greet" if text.startswith("hello") else "ask_weather"
        return {"intent": {"name": intent, "confidence": 0.9}, "entities": found if intent == "ask_weather" else []}

    evaluation = evaluate_stories(train(project), project.test_stories, parse=parse)
    assert evaluation.num_correct == int(passes)
    if not passes:
        (mistake,) = evaluation.failed[0].mistakes
        assert (mistake.kind, mistake.expected) == ("entities", "[city='Rome']")
        assert "entities [city='Rome'] expected for 'weather in Rome?" in mistake.describe()
        assert "  - intent: ask_weather  # predicted: ask_weather: weather in" in evaluation.render_failed_stories_yaml()


def test_form_rejection_is_emulated_in_evaluation(tmp_path):
    project = load(tmp_path, data="""
        version: "3.1"
        stories:
        - story: chitchat inside the form
          steps:
          - intent: book
          - action: trip_form
          - active_loop: trip_form
          - intent: bot_challenge
          - action: utter_iamabot
          - action: trip_form
        rules:
        - rule: bot challenge
          steps:
          - intent: bot_challenge
          - action: utter_iamabot
    """, tests="""
        version: "3.1"
        stories:
        - story: chitchat inside the form
          steps:
          - intent: book
          - action: trip_form
          - active_loop: trip_form
          - intent: bot_challenge
          - action: utter_iamabot
          - action: trip_form
    """)
    evaluation = evaluate_stories(train(project), project.test_stories)
    assert evaluation.failed == []
    # the form is rejected at bot_challenge; the general rule answers, then the form resumes
    assert [(p["predicted"], p["policy"]) for p in evaluation.predictions[2:4]] == [
        ("utter_iamabot", "RulePolicy"),
        ("trip_form", "RulePolicy"),
    ]


# ------------------------------------------------------------ text-only user turns

TEXT_ONLY = """
    version: "3.1"
    stories:
    - story: indirect
      steps:
      - intent: greet
      - action: utter_greet
      - user: "sunny in Rome?"
      - action: utter_weather
"""


def test_text_only_user_turn_without_an_nlu_model_is_a_training_error(tmp_path: Path) -> None:
    project = load(tmp_path, data=TEXT_ONLY)
    with pytest.raises(TrainingError, match="data/stories.yml:7(.|\\n)*user turn without an intent"):
        train(project)


def test_text_only_user_turn_is_trained_as_the_intent_given_for_its_text(tmp_path: Path) -> None:
    from pipeline.training.core.stories import label_text_turns, text_only_turns

    project = load(tmp_path, data=TEXT_ONLY)
    assert text_only_turns(project.stories) == ["sunny in Rome?"]
    labelled, warnings = label_text_turns(project.stories, {"sunny in Rome?": ["ask_weather"]})
    assert len(warnings) == 1
    assert "data/stories.yml:7" in warnings[0] and "'ask_weather'" in warnings[0]
    model = train_core(project.domain, labelled, project.config)
    tracker = TrackerState().with_user("greet").with_action("utter_greet").with_user("ask_weather")
    assert model.predict_next_action(tracker).action == "utter_weather"


BOT_TEXTS = """
    version: "3.1"
    stories:
    - story: greet by text
      steps:
      - intent: greet
      - bot: hi
      - intent: ask_weather
      - action: utter_weather
"""


def test_single_word_bot_text_is_a_text_not_an_action_and_trains_as_its_response(tmp_path: Path) -> None:
    from pipeline.data.model import ActionStep
    from pipeline.validation import validate_project

    project = load(tmp_path, data=BOT_TEXTS)
    bot = project.stories[0].steps[1]
    assert isinstance(bot, ActionStep) and bot.is_text and bot.name == "hi"
    assert not [p for p in validate_project(project) if p.severity == "error"]
    model = train(project)
    assert model.predict_next_action(TrackerState().with_user("greet")).action == "utter_greet"


def test_bot_text_no_response_says_is_a_training_error_on_its_line(tmp_path: Path) -> None:
    project = load(tmp_path, data=BOT_TEXTS.replace("bot: hi", "bot: Perfect"))
    with pytest.raises(TrainingError, match="data/stories.yml:6.*'Perfect'"):
        train(project)


def test_text_only_user_turn_takes_the_ranked_intent_the_other_stories_agree_with(tmp_path: Path) -> None:
    from pipeline.training.core.stories import label_text_turns

    data = TEXT_ONLY + """
    - story: weather by intent
      steps:
      - intent: greet
      - action: utter_greet
      - intent: ask_weather
      - action: utter_weather
    """
    project = load(tmp_path, data=data)
    # NLU ranks greet first, but after utter_greet only ask_weather goes on with utter_weather
    labelled, warnings = label_text_turns(project.stories, {"sunny in Rome?": ["greet", "ask_weather"]})
    step = labelled[0].steps[2]
    assert isinstance(step, UserStep) and step.intent == "ask_weather"
    assert "ranks it 2." in warnings[0]
    # with no story to agree with, the NLU model's best intent
    labelled, _ = label_text_turns(project.stories[:1], {"sunny in Rome?": ["greet", "ask_weather"]})
    step = labelled[0].steps[2]
    assert isinstance(step, UserStep) and step.intent == "greet"
