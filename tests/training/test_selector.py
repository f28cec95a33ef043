"""ResponseSelector and retrieval intents: tiny real selectors trained on inline data, their parse
output in Rasa 3.x's shape, save/load, finetune, options, and the retrieval action end to end
(validation, dialogue model, story test, response selection report, CLI).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.data.loader import read_nlu_files
from pipeline.data.model import Component, Config, Domain, NluData, freeze
from pipeline.decision import FULL, KEEP, decide
from pipeline.errors import ConfigError, DataError, FinetuneRefused
from pipeline.evaluation import NO_RESPONSE, RESPONSE_REPORT_FILE, evaluate_nlu, write_nlu_reports
from pipeline.fingerprint import compute_fingerprint, summarize_changes
from pipeline.metrics import headline_metrics
from pipeline.train import load_training_project, train
from pipeline.training.nlu import NluModel, check_finetune_compatible, finetune_nlu, layout, train_nlu
from pipeline.training.nlu.selector import resolve_selectors
from pipeline.training.nlu.settings import resolve_settings
from tests.helpers import write_project

NLU_YAML = """
    version: "3.1"
    nlu:
    - intent: greet
      examples: |
        - hello there
        - hi
        - hey
        - good morning
    - intent: goodbye
      examples: |
        - bye
        - goodbye
        - see you later
        - good night
    - intent: faq/ask_price
      examples: |
        - how much does it cost
        - what is the price
        - how expensive is it
        - what do you charge
    - intent: faq/ask_hours
      examples: |
        - when are you open
        - what are your opening hours
        - are you open on sunday
        - what time do you close
    - intent: chitchat/ask_name
      examples: |
        - what is your name
        - who are you
        - do you have a name
        - what should i call you
    - intent: chitchat/ask_weather
      examples: |
        - is it sunny outside
        - how is the weather
        - will it rain today
        - is it cold outside
"""

RESPONSES = {
    "utter_faq/ask_price": [{"text": "It costs 10 euros."}],
    "utter_faq/ask_hours": [{"text": "From 9 to 5."}],
    "utter_chitchat/ask_name": [{"text": "I am a bot."}, {"text": "Call me bot."}],
    "utter_chitchat/ask_weather": [{"text": "Sunny."}],
    "utter_greet": [{"text": "Hi!"}],
}

TINY = {
    "epochs": 30,
    "transformer_size": 16,
    "number_of_attention_heads": 2,
    "embedding_dimension": 8,
    "batch_size": [8, 16],
    "learning_rate": 0.01,
    "early_stopping": False,
}


def config(*selectors: dict[str, Any]) -> Config:
    """A small pipeline with a tiny DIETClassifier and the given ResponseSelectors."""
    return Config(
        pipeline=(
            Component("WhitespaceTokenizer"),
            Component("CountVectorsFeaturizer"),
            Component("CountVectorsFeaturizer", freeze({"analyzer": "char_wb", "min_ngram": 1, "max_ngram": 3})),
            Component("DIETClassifier", freeze(TINY)),
            *(Component("ResponseSelector", freeze({**TINY, **options})) for options in selectors),
        )
    )


def read_yaml(tmp_path: Path, text: str, name: str = "nlu.yml") -> NluData:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return read_nlu_files([path])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> NluData:
    return read_yaml(tmp_path_factory.mktemp("data"), NLU_YAML)


@pytest.fixture(scope="module")
def one_selector(data: NluData, tmp_path_factory: pytest.TempPathFactory) -> tuple[NluModel, Path]:
    """One tiny model with a selector for every retrieval intent, saved."""
    model = train_nlu(data, config({}), seed=3, responses=RESPONSES)
    directory = tmp_path_factory.mktemp("model") / "nlu"
    model.save(directory)
    return model, directory


def _retrieval_examples(data: NluData) -> list[tuple[str, str]]:
    return [(e.text, e.full_intent) for e in data.examples if e.response_key]


def test_selector_picks_the_response_of_its_training_examples(one_selector: tuple[NluModel, Path], data: NluData) -> None:
    model, _ = one_selector
    examples = _retrieval_examples(data)
    results = model.parse_batch([text for text, _ in examples])
    chosen = [r["response_selector"]["default"]["response"]["intent_response_key"] for r in results]
    assert chosen == [key for _, key in examples]
    # the intent classifier sees the base intent, as in Rasa
    assert {r["intent"]["name"] for r in results} == {"faq", "chitchat"}
    assert model.summary["selectors"]["default"]["num_examples"] == 16
    assert model.summary["selectors"]["default"]["num_responses"] == 4


def test_parse_output_has_rasa_3_response_selector_shape(one_selector: tuple[NluModel, Path]) -> None:
    model, _ = one_selector
    result = model.parse("what is the price")
    assert list(result) == ["text", "intent", "entities", "intent_ranking", "response_selector"]
    block = result["response_selector"]
    assert list(block) == ["all_retrieval_intents", "default"]
    assert block["all_retrieval_intents"] == ["chitchat", "faq"]
    response = block["default"]["response"]
    assert list(response) == ["responses", "confidence", "intent_response_key", "utter_action"]
    assert response == {
        "responses": [{"text": "It costs 10 euros."}],
        "confidence": response["confidence"],
        "intent_response_key": "faq/ask_price",
        "utter_action": "utter_faq/ask_price",
    }
    ranking = block["default"]["ranking"]
    assert [list(r) for r in ranking] == [["confidence", "intent_response_key"]] * 4
    assert ranking[0] == {"confidence": response["confidence"], "intent_response_key": "faq/ask_price"}
    assert [r["confidence"] for r in ranking] == sorted((r["confidence"] for r in ranking), reverse=True)
    assert sum(r["confidence"] for r in ranking) == pytest.approx(1.0, abs=1e-5)
    json.dumps(result)


def test_save_load_round_trip_predicts_identically(one_selector: tuple[NluModel, Path], data: NluData) -> None:
    model, directory = one_selector
    assert (directory / layout.SELECTORS_FILE).is_file() and (directory / "selector0.npz").is_file()
    loaded = NluModel.load(directory)
    texts = [e.text for e in data.examples] + ["is it open on monday", "hello, what's your name?"]
    assert loaded.parse_batch(texts) == model.parse_batch(texts)
    assert loaded.responses == {k: v for k, v in RESPONSES.items() if "/" in k}


def test_one_selector_per_retrieval_intent(data: NluData, tmp_path: Path) -> None:
    model = train_nlu(data, config({"retrieval_intent": "faq"}, {"retrieval_intent": "chitchat"}), seed=3)
    assert [s.keys for s in model.selectors] == [("faq/ask_hours", "faq/ask_price"), ("chitchat/ask_name", "chitchat/ask_weather")]
    result = model.parse("what is your name")["response_selector"]
    assert list(result) == ["all_retrieval_intents", "faq", "chitchat"]
    assert result["chitchat"]["response"]["intent_response_key"] == "chitchat/ask_name"
    # without responses Rasa answers with the key as text
    assert result["chitchat"]["response"]["responses"] == [{"text": "chitchat/ask_name"}]
    model.save(tmp_path / "nlu")
    assert NluModel.load(tmp_path / "nlu").parse("when are you open") == model.parse("when are you open")


def test_without_retrieval_intents_the_model_is_unchanged_by_a_selector(tmp_path: Path) -> None:
    """No retrieval intents: a ResponseSelector in the pipeline trains nothing and changes no weight."""
    plain = read_yaml(tmp_path, NLU_YAML.split("    - intent: faq/ask_price")[0])
    without = train_nlu(plain, config(), seed=5)
    with_selector = train_nlu(plain, config({}), seed=5)
    assert not with_selector.selectors
    assert without.weights.keys() == with_selector.weights.keys()
    assert all(np.array_equal(without.weights[k], with_selector.weights[k]) for k in without.weights)
    assert with_selector.parse("good morning") == without.parse("good morning")
    assert "response_selector" not in without.parse("good morning")
    with_selector.save(tmp_path / "nlu")
    assert not (tmp_path / "nlu" / layout.SELECTORS_FILE).exists()


def test_the_selector_does_not_change_the_intent_classifier(data: NluData, one_selector: tuple[NluModel, Path]) -> None:
    model, _ = one_selector
    without = train_nlu(data, config(), seed=3)
    assert all(np.array_equal(without.weights[k], model.weights[k]) for k in without.weights)


def test_finetune_keeps_and_trains_the_selector(data: NluData, one_selector: tuple[NluModel, Path], tmp_path: Path) -> None:
    _, directory = one_selector
    added = read_yaml(tmp_path, """
        version: "3.1"
        nlu:
        - intent: faq/ask_price
          examples: |
            - is it expensive
    """, "added.yml")
    merged = data.merge(added)
    model = finetune_nlu(directory, merged, config({}), epoch_fraction=0.5, seed=3, responses=RESPONSES)
    selector = model.selectors[0]
    assert selector.summary["mode"] == "finetune" and selector.summary["epochs_run"] == 15
    assert selector.keys == ("chitchat/ask_name", "chitchat/ask_weather", "faq/ask_hours", "faq/ask_price")
    chosen = model.parse("how much does it cost")["response_selector"]["default"]["response"]
    assert chosen["intent_response_key"] == "faq/ask_price"


def test_selector_keeps_working_through_a_label_growing_finetune(
    data: NluData, one_selector: tuple[NluModel, Path], tmp_path: Path
) -> None:
    _, directory = one_selector
    merged = data.merge(read_yaml(tmp_path, """
        version: "3.1"
        nlu:
        - intent: thanks
          examples: |
            - thank you
            - thanks a lot
            - many thanks
            - cheers
    """, "thanks.yml"))
    model = finetune_nlu(directory, merged, config({}), epoch_fraction=0.5, seed=3, responses=RESPONSES)
    assert model.summary["intents_added"] == ["thanks"] and "thanks" in model.labels.intents
    assert model.selectors[0].keys == ("chitchat/ask_name", "chitchat/ask_weather", "faq/ask_hours", "faq/ask_price")
    chosen = model.parse("how much does it cost")["response_selector"]["default"]["response"]
    assert chosen["intent_response_key"] == "faq/ask_price"


def test_finetune_is_refused_when_retrieval_intents_or_selectors_change(
    data: NluData, one_selector: tuple[NluModel, Path], tmp_path: Path
) -> None:
    _, directory = one_selector
    new_key = data.merge(read_yaml(tmp_path, """
        version: "3.1"
        nlu:
        - intent: faq/ask_address
          examples: |
            - where are you
            - what is your address
    """, "new.yml"))
    with pytest.raises(FinetuneRefused, match="faq/ask_address"):
        check_finetune_compatible(directory, new_key, config({}))
    with pytest.raises(FinetuneRefused, match="ResponseSelector `faq` added.*ResponseSelector `default` removed"):
        check_finetune_compatible(directory, data, config({"retrieval_intent": "faq"}))
    check_finetune_compatible(directory, data, config({"epochs": 3}))  # epochs may change


def test_selector_options_are_checked_and_noted() -> None:
    with pytest.raises(ConfigError, match="ResponseSelector: unknown option 'epoch'"):
        resolve_settings(Config(pipeline=(Component("CountVectorsFeaturizer"), Component("ResponseSelector", freeze({"epoch": 3})))))
    settings = resolve_settings(
        Config(
            pipeline=(
                Component("CountVectorsFeaturizer"),
                Component("ResponseSelector", freeze({"use_text_as_label": True, "hidden_layers_sizes": {"text": []}})),
            )
        )
    )
    assert any(i.startswith("ResponseSelector.use_text_as_label=true") for i in settings.ignored)
    assert "ResponseSelector.hidden_layers_sizes" in settings.ignored
    (selector,) = resolve_selectors(Config(pipeline=(Component("ResponseSelector", freeze({"epochs": 7, "retrieval_intent": "faq"})),)))
    assert (selector.key, selector.diet.epochs, selector.diet.number_of_transformer_layers) == ("faq", 7, 0)


# --------------------------------------------------------------- response selection report


def _fake_parse(texts: list[str]) -> list[dict[str, Any]]:
    """Parse results as a model with one selector would give them (the second answer is wrong)."""
    keys = {"what is the price": "faq/ask_price", "when are you open": "faq/ask_price", "hi": "faq/ask_hours"}
    return [
        {
            "text": t,
            "intent": {"name": "faq" if t != "hi" else "greet", "confidence": 0.9},
            "entities": [],
            "response_selector": {
                "all_retrieval_intents": ["faq"],
                "default": {"response": {"intent_response_key": keys[t], "confidence": 0.8}, "ranking": []},
            },
        }
        for t in texts
    ]


def test_response_selection_report_is_written(tmp_path: Path) -> None:
    test = read_yaml(tmp_path, """
        version: "3.1"
        nlu:
        - intent: faq/ask_price
          examples: |
            - what is the price
        - intent: faq/ask_hours
          examples: |
            - when are you open
        - intent: greet
          examples: |
            - hi
    """)
    evaluation = evaluate_nlu(_fake_parse, test)
    report = evaluation.response_report
    assert report is not None
    assert report["accuracy"] == 0.5
    assert report["faq/ask_price"]["precision"] == 0.5 and report["faq/ask_price"]["recall"] == 1.0
    assert report["faq/ask_hours"]["support"] == 1 and report["faq/ask_hours"]["confused_with"] == {"faq/ask_price": 1}
    assert evaluation.headline["response_selection_f1"] == pytest.approx(report["weighted avg"]["f1-score"])
    assert evaluation.response_errors == [
        {"text": "when are you open", "intent_response_key_target": "faq/ask_hours",
         "intent_response_key_prediction": {"name": "faq/ask_price", "confidence": 0.8}}
    ]
    written = {p.name for p in write_nlu_reports(evaluation, tmp_path / "results")}
    assert {RESPONSE_REPORT_FILE, "response_selection_errors.json", "response_selection_confusion_matrix.png",
            "response_selection_histogram.png"} <= written
    assert json.loads((tmp_path / "results" / RESPONSE_REPORT_FILE).read_text()) == report


def test_no_selector_no_response_selection_metric(tmp_path: Path) -> None:
    test = read_yaml(tmp_path, """
        version: "3.1"
        nlu:
        - intent: faq/ask_price
          examples: |
            - what is the price
    """)

    def parse(texts: list[str]) -> list[dict[str, Any]]:
        return [{"text": t, "intent": {"name": "faq", "confidence": 1.0}, "entities": []} for t in texts]

    evaluation = evaluate_nlu(parse, test)
    assert evaluation.response_report is None and "response_selection_f1" not in evaluation.headline
    assert RESPONSE_REPORT_FILE not in {p.name for p in write_nlu_reports(evaluation, tmp_path / "r")}
    assert headline_metrics(None, None, None, response_report={"accuracy": 0.0})["response_selection_f1"] is None
    # a selector that answers nothing for a retrieval example counts as a wrong answer
    missing = evaluate_nlu(lambda ts: [{**p, "response_selector": {"all_retrieval_intents": []}} for p in parse(ts)], test)
    assert missing.response_predictions[0]["intent_response_key_prediction"]["name"] == NO_RESPONSE


# ------------------------------------------------------- domain, fingerprint, decision


BOT = {
    "domain.yml": """
        version: "3.1"
        intents:
          - greet
          - faq
        responses:
          utter_greet:
          - text: "Hi!"
          utter_faq/ask_price:
          - text: "It costs 10 euros."
          utter_faq/ask_hours:
          - text: "From 9 to 5."
    """,
    "config.yml": """
        language: en
        pipeline:
        - name: WhitespaceTokenizer
        - name: CountVectorsFeaturizer
        - name: DIETClassifier
          epochs: 30
          transformer_size: 16
          number_of_attention_heads: 2
          embedding_dimension: 8
          batch_size: [8, 16]
          learning_rate: 0.01
          early_stopping: false
        - name: ResponseSelector
          epochs: 30
          embedding_dimension: 8
          batch_size: [8, 16]
          learning_rate: 0.01
          early_stopping: false
        policies:
        - name: MemoizationPolicy
        - name: RulePolicy
    """,
    "data/nlu.yml": """
        version: "3.1"
        nlu:
        - intent: greet
          examples: |
            - hello there
            - hi
            - hey
            - good morning
        - intent: faq/ask_price
          examples: |
            - how much does it cost
            - what is the price
            - how expensive is it
            - what do you charge
        - intent: faq/ask_hours
          examples: |
            - when are you open
            - what are your opening hours
            - are you open on sunday
            - what time do you close
    """,
    "data/stories.yml": """
        version: "3.1"
        stories:
        - story: faq then greet
          steps:
          - intent: faq
          - action: utter_faq
          - intent: greet
          - action: utter_greet
        rules:
        - rule: answer faqs
          steps:
          - intent: faq
          - action: utter_faq
    """,
    "tests/test_stories.yml": """
        version: "3.1"
        stories:
        - story: the price
          steps:
          - user: |
              what is the price
            intent: faq/ask_price
          - action: utter_faq/ask_price
        - story: the hours
          steps:
          - user: |
              when are you open
            intent: faq
          - action: utter_faq
    """,
    "tests/test_nlu.yml": """
        version: "3.1"
        nlu:
        - intent: faq/ask_price
          examples: |
            - how much does it cost
        - intent: faq/ask_hours
          examples: |
            - are you open on sunday
    """,
}


def test_retrieval_action_is_a_domain_action_and_validates(tmp_path: Path) -> None:
    assert Domain(responses=freeze(RESPONSES)).retrieval_actions == ("utter_chitchat", "utter_faq")
    assert "utter_faq" in Domain(responses=freeze(RESPONSES)).action_names
    root = write_project(tmp_path / "bot", BOT)
    _, warnings = load_training_project(root / "domain.yml", root / "config.yml", [root / "data"])  # no DataError
    assert not [p for p in warnings if "utter_faq" in p.message]
    # without retrieval responses utter_faq is an unknown action
    other = write_project(tmp_path / "other", {**BOT, "domain.yml": BOT["domain.yml"].split("          utter_faq/ask_price")[0]})
    with pytest.raises(DataError, match="utter_faq"):
        load_training_project(other / "domain.yml", other / "config.yml", [other / "data/stories.yml"])


def test_retrieval_responses_are_fingerprinted_and_retrain_the_nlu_model(tmp_path: Path) -> None:
    root = write_project(tmp_path, BOT)
    project, _ = load_training_project(root / "domain.yml", root / "config.yml", [root / "data"])
    before = compute_fingerprint(project)
    assert "retrieval_responses" in before["sections"]
    changed = dict(BOT)
    changed["domain.yml"] = BOT["domain.yml"].replace("From 9 to 5.", "From 8 to 6.")
    other = write_project(tmp_path / "changed", changed)
    after = compute_fingerprint(load_training_project(other / "domain.yml", other / "config.yml", [other / "data"])[0])
    changes = summarize_changes(before, after)
    assert set(changes.changed_sections) == {"responses", "retrieval_responses"}
    decision = decide(before, {}, changes)
    assert (decision.nlu, decision.core) == (FULL, KEEP)
    assert any("retrieval responses" in r for r in decision.reasons)
    # a plain response change still only repackages
    plain = dict(BOT)
    plain["domain.yml"] = BOT["domain.yml"].replace('"Hi!"', '"Hello!"')
    third = write_project(tmp_path / "plain", plain)
    after = compute_fingerprint(load_training_project(third / "domain.yml", third / "config.yml", [third / "data"])[0])
    assert decide(before, {}, summarize_changes(before, after)).kind == "repackage"


def test_fingerprint_without_retrieval_intents_has_no_selector_section(tmp_path: Path) -> None:
    files = {**BOT, "data/nlu.yml": BOT["data/nlu.yml"].split("        - intent: faq/ask_price")[0]}
    root = write_project(tmp_path, files)
    project, _ = load_training_project(root / "domain.yml", root / "config.yml", [root / "data"])
    assert "retrieval_responses" not in compute_fingerprint(project)["sections"]


@pytest.mark.slow
def test_bot_with_retrieval_intents_trains_tests_and_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: the dialogue model runs utter_faq after intent faq, the story test passes
    (also where the story names utter_faq/ask_price), the report is written, parse shows it."""
    root = write_project(tmp_path, BOT)
    result = train(root / "domain.yml", root / "config.yml", [root / "data"], output=root / "models")
    monkeypatch.chdir(root)

    from pipeline.testing import test_model
    from pipeline.training.core import CoreModel, TrackerState

    tested = test_model(Path(result.model), *_test_data(root), root / "results")
    assert tested.stories.num_correct == tested.stories.num_stories == 2, [f.to_dict() for f in tested.stories.failed]
    assert tested.metrics["response_selection_f1"] == 1.0
    report = json.loads((root / "results" / RESPONSE_REPORT_FILE).read_text())
    assert set(report) >= {"faq/ask_price", "faq/ask_hours", "accuracy", "macro avg", "weighted avg"}
    assert report["faq/ask_price"]["support"] == 1

    import tarfile

    with tarfile.open(result.model) as tar:
        tar.extractall(root / "extracted", filter="data")
    core = CoreModel.load(root / "extracted" / "core")
    assert core.predict_next_action(TrackerState().with_user("faq")).action == "utter_faq"

    capsys.readouterr()
    assert main(["parse", "--model", "models", "what is the price"], environ={}) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["intent"]["name"] == "faq"
    assert parsed["response_selector"]["default"]["response"]["utter_action"] == "utter_faq/ask_price"


def _test_data(root: Path) -> tuple[NluData, tuple[Any, ...]]:
    from pipeline.data.loader import DirectorySource, ProjectPaths, load_project

    project, _ = load_project(DirectorySource(root), ProjectPaths(data=("tests",), tests=()))
    return project.nlu, tuple(project.stories)


@pytest.mark.parametrize(
    ("current", "previous", "gated", "passed"),
    [
        pytest.param({"intent_f1": 0.9}, {"intent_f1": 0.9}, False, True, id="no-selector-no-check"),
        pytest.param({"intent_f1": 0.9, "response_selection_f1": 0.95}, None, True, True, id="selector-first-model"),
        pytest.param({"intent_f1": 0.9, "response_selection_f1": 0.80}, {"intent_f1": 0.9, "response_selection_f1": 0.95},
                     True, False, id="selector-dropped"),
    ],
)
def test_gate_checks_response_selection_only_for_models_with_a_selector(
    current: dict[str, float], previous: dict[str, float] | None, gated: bool, passed: bool
) -> None:
    from types import SimpleNamespace

    from pipeline.ci import CiOptions, _gate

    gate = _gate(current, SimpleNamespace(metrics=previous) if previous else None, CiOptions(project_dir=Path(".")))
    names = [c.name for c in gate.checks]
    assert ("response_selection_f1" in names) is gated
    assert gate.passed is passed
    if not passed:
        assert "response selection F1 0.800 dropped 0.150" in gate.failures[0].reason


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        pytest.param({"default": {"response": {"utter_action": "utter_faq/ask_price"}}}, "utter_faq/ask_price", id="default"),
        pytest.param({"faq": {"response": {"utter_action": "utter_faq/ask_hours"}},
                      "default": {"response": {"utter_action": "utter_faq/ask_price"}}}, "utter_faq/ask_hours",
                     id="own-retrieval-intent-first"),
        pytest.param({"all_retrieval_intents": []}, "utter_faq", id="no-answer"),
        pytest.param(None, "utter_faq", id="no-selector"),
    ],
)
def test_full_retrieval_name_is_the_selected_response(selection: dict[str, Any] | None, expected: str) -> None:
    from pipeline.training.core.evaluation import full_retrieval_name

    assert full_retrieval_name("utter_faq", selection) == expected
