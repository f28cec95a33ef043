"""TEDPolicy really trains: tiny networks, a few seconds, fixed seed.

Generalisation to unseen histories, a rule overriding the ML policy,
save/load identity, TensorFlow/NumPy agreement, determinism, progress events
and finetuning.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.loader import DirectorySource, load_project
from pipeline.data.model import Project
from pipeline.errors import FinetuneRefused
from pipeline.training.core import CoreModel, TrackerState, evaluate_stories, finetune_core, train_core
from pipeline.training.core.ted import forward_tensorflow, predict_probabilities
from tests.helpers import write_project

pytestmark = pytest.mark.slow

DOMAIN = """
    version: "3.1"
    intents: [greet, ask_weather, ask_time, goodbye]
    slots:
      vip:
        type: bool
        mappings: [{type: custom}]
    responses:
      utter_greet: [{text: "hi"}]
      utter_weather: [{text: "sunny"}]
      utter_time: [{text: "noon"}]
      utter_goodbye: [{text: "bye"}]
      utter_hello_vip: [{text: "welcome back"}]
"""

TED = """
      - name: TEDPolicy
        max_history: 3
        epochs: {epochs}
        transformer_size: 32
        number_of_attention_heads: 2
        embedding_dimension: 8
        batch_size: 16
        learning_rate: 0.01
        drop_rate_dialogue: 0.0
"""


def config(*, epochs: int = 40, rules: bool = False) -> str:
    head = "    policies:\n" + ("      - name: RulePolicy\n" if rules else "")
    return head + TED.format(epochs=epochs)


# every story answers each intent with its own response; orders vary
STORIES = """
    version: "3.1"
    stories:
    - story: greet weather bye
      steps:
      - intent: greet
      - action: utter_greet
      - intent: ask_weather
      - action: utter_weather
      - intent: goodbye
      - action: utter_goodbye
    - story: time then weather
      steps:
      - intent: ask_time
      - action: utter_time
      - intent: ask_weather
      - action: utter_weather
    - story: greet time
      steps:
      - intent: greet
      - action: utter_greet
      - intent: ask_time
      - action: utter_time
      - intent: goodbye
      - action: utter_goodbye
    - story: weather bye
      steps:
      - intent: ask_weather
      - action: utter_weather
      - intent: goodbye
      - action: utter_goodbye
"""

RULES = """
    rules:
    - rule: welcome a vip
      condition:
      - slot_was_set:
        - vip: true
      steps:
      - intent: greet
      - action: utter_hello_vip
"""

# an order never seen in training (and a turn the memory could not recall)
UNSEEN = """
    version: "3.1"
    stories:
    - story: unseen order
      steps:
      - intent: goodbye
      - action: utter_goodbye
      - intent: ask_time
      - action: utter_time
      - intent: greet
      - action: utter_greet
      - intent: ask_weather
      - action: utter_weather
"""


def load(
    directory: Path, *, data: str = STORIES, cfg: str | None = None, tests: str | None = UNSEEN, domain: str = DOMAIN
) -> Project:
    files = {"domain.yml": domain, "data/stories.yml": data, "config.yml": cfg or config()}
    if tests is not None:
        files["tests/test_stories.yml"] = tests
    write_project(directory, files)
    project, _ = load_project(DirectorySource(directory))
    return project


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny TED-only model, its project and the progress events of its training."""
    project = load(tmp_path_factory.mktemp("ted"))
    events: list[dict] = []
    model = train_core(project.domain, project.stories, project.config, progress=events.append, seed=7)
    return project, model, events


def test_ted_learns_the_stories_and_generalises_to_an_unseen_order(trained):
    project, model, events = trained
    assert model.summary["policies"] == ["TEDPolicy"] and model.summary["epochs_run"] == 40
    evaluation = evaluate_stories(model, project.test_stories)
    assert evaluation.failed == [], evaluation.render_failed_stories_yaml()
    assert {p["policy"] for p in evaluation.predictions} == {"TEDPolicy"}
    prediction = model.predict_next_action(TrackerState().with_user("goodbye").with_action("utter_goodbye").with_user("greet"))
    assert prediction.action == "utter_greet" and prediction.confidence > 0.5
    assert prediction.ranking[0] == ("utter_greet", prediction.confidence) and len(prediction.ranking) <= 10


def test_one_progress_event_per_epoch(trained):
    _, _, events = trained
    assert [e["epoch"] for e in events] == list(range(1, 41))
    assert set(events[0]) == {"model", "phase", "epoch", "epochs", "loss", "accuracy"}
    assert (events[0]["model"], events[0]["phase"], events[0]["epochs"]) == ("core", "train", 40)
    assert events[-1]["loss"] < events[0]["loss"] and events[-1]["accuracy"] == 1.0


def test_save_load_predicts_identically_and_numpy_matches_tensorflow(trained, tmp_path):
    project, model, _ = trained
    model.save(tmp_path / "core")
    loaded = CoreModel.load(tmp_path / "core")
    trackers = [
        TrackerState().with_user("greet"),
        TrackerState().with_user("ask_time").with_action("utter_time"),
        TrackerState().with_user("goodbye").with_action("utter_goodbye").with_user("ask_weather"),
    ]
    assert [loaded.predict_next_action(t) for t in trackers] == [model.predict_next_action(t) for t in trackers]
    ted = model.ted_policy
    histories = [model.states_for(t) for t in trackers]
    x, mask = model.spec.encode_histories(histories, ted.max_history)
    numpy_probabilities = predict_probabilities(ted.weights, x, mask, ted.settings)
    logits = forward_tensorflow(ted.weights, x, mask, ted.settings)
    tf_probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    tf_probabilities /= tf_probabilities.sum(-1, keepdims=True)
    np.testing.assert_allclose(numpy_probabilities, tf_probabilities, atol=1e-5)


def test_training_is_deterministic_for_a_seed(trained):
    project, model, _ = trained
    again = train_core(project.domain, project.stories, project.config, seed=7)
    for name, value in model.ted_policy.weights.items():
        np.testing.assert_array_equal(again.ted_policy.weights[name], value, err_msg=name)


def test_a_rule_overrides_the_ml_policy(tmp_path):
    project = load(tmp_path, data=STORIES + RULES, cfg=config(rules=True))
    model = train_core(project.domain, project.stories, project.config, seed=7)
    vip = TrackerState().with_slot("vip", True).with_user("greet")
    ted_alone = model.ted_probabilities([model.states_for(vip)])[0]
    assert model.spec.actions[int(ted_alone.argmax())] == "utter_greet"  # what the stories taught
    prediction = model.predict_next_action(vip)
    assert (prediction.action, prediction.confidence, prediction.policy) == ("utter_hello_vip", 1.0, "RulePolicy")
    plain = model.predict_next_action(TrackerState().with_user("greet"))
    assert (plain.action, plain.policy) == ("utter_greet", "TEDPolicy")


def test_finetune_trains_a_fraction_of_the_epochs_on_the_new_stories(trained, tmp_path):
    project, model, _ = trained
    model.save(tmp_path / "previous")
    more = STORIES + """
    - story: time bye
      steps:
      - intent: ask_time
      - action: utter_time
      - intent: goodbye
      - action: utter_goodbye
    """
    new = load(tmp_path / "new", data=more, cfg=config(epochs=40))
    events: list[dict] = []
    tuned = finetune_core(
        tmp_path / "previous", new.domain, new.stories, new.config, epoch_fraction=0.25, progress=events.append, seed=7
    )
    assert tuned.summary["mode"] == "finetune" and tuned.summary["epochs_run"] == math.ceil(40 * 0.25)
    assert [(e["phase"], e["epoch"], e["epochs"]) for e in events][-1] == ("finetune", 10, 10)
    assert tuned.summary["num_stories"] == 5
    # the new config's epochs override the previous model's
    fewer = load(tmp_path / "fewer", data=more, cfg=config(epochs=6))
    assert finetune_core(tmp_path / "previous", fewer.domain, fewer.stories, fewer.config, epoch_fraction=0.5).summary[
        "epochs_run"
    ] == 3


def test_finetune_is_refused_when_the_network_changes(trained, tmp_path):
    _, model, _ = trained
    model.save(tmp_path / "previous")
    bigger = load(tmp_path / "bigger", cfg=config().replace("transformer_size: 32", "transformer_size: 64"))
    with pytest.raises(FinetuneRefused) as caught:
        finetune_core(tmp_path / "previous", bigger.domain, bigger.stories, bigger.config, epoch_fraction=0.5)
    assert caught.value.reasons == ("TEDPolicy option 'transformer_size' changed from 32 to 64",)


def test_finetune_grows_the_inputs_when_the_domain_gained_an_intent(trained, tmp_path):
    project, model, _ = trained
    model.save(tmp_path / "previous")
    grown = load(tmp_path / "grown", domain=DOMAIN.replace("goodbye]", "goodbye, thank]"))
    old_trackers = [TrackerState().with_user("greet"), TrackerState().with_user("ask_time"), TrackerState().with_user("goodbye")]
    tuned = finetune_core(tmp_path / "previous", grown.domain, grown.stories, grown.config, epoch_fraction=0.25, seed=7)
    assert tuned.summary["ted"]["input_features_added"] == 1
    assert "thank" in tuned.spec.intents
    assert [tuned.predict_next_action(t).action for t in old_trackers] == [
        model.predict_next_action(t).action for t in old_trackers
    ]
    removed = load(tmp_path / "removed", domain=DOMAIN.replace(", goodbye]", "]").replace('      utter_goodbye: [{text: "bye"}]\n', ""),
                   data=STORIES)
    with pytest.raises(FinetuneRefused) as caught:
        finetune_core(tmp_path / "previous", removed.domain, removed.stories, removed.config, epoch_fraction=0.25)
    assert "intent 'goodbye' removed from the domain" in caught.value.reasons
