"""NLU model: tiny real models trained in seconds, save/load, finetune and its refusals.

The YAML of every data set is inline; files are written into tmp dirs and
read with the real loader. One tiny model is trained per module and shared.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import MODEL_FORMAT_VERSION
from pipeline.data.loader import read_nlu_files
from pipeline.data.model import Component, Config, NluData, freeze
from pipeline.errors import FinetuneRefused, ModelError, TrainingError
from pipeline.training.nlu import NluModel, check_finetune_compatible, finetune_nlu, train_nlu
from pipeline.training.nlu import layout
from pipeline.training.nlu.architecture import grow_weights

ROOT = Path(__file__).resolve().parents[2]

NLU_YAML = """
    version: "3.1"
    nlu:
    - intent: greet
      examples: |
        - hello there
        - hi
        - hey
        - good morning
        - hello
        - hi friend
    - intent: goodbye
      examples: |
        - bye
        - goodbye
        - see you later
        - bye bye
        - good night
        - see you
    - intent: book_flight
      examples: |
        - fly from [Berlin]{"entity": "city", "role": "departure"} to [Paris]{"entity": "city", "role": "destination"}
        - book a flight from [London]{"entity": "city", "role": "departure"} to [Rome]{"entity": "city", "role": "destination"}
        - i want to fly to [Madrid]{"entity": "city", "role": "destination"}
        - flight from [Oslo]{"entity": "city", "role": "departure"} to [NYC]{"entity": "city", "role": "destination", "value": "New York"}
        - get me a plane ticket to [Vienna]{"entity": "city", "role": "destination"}
        - book me a flight to [Lisbon]{"entity": "city", "role": "destination"}
    - intent: check_weather
      examples: |
        - weather in [Berlin](city) [tomorrow](date)
        - is it raining in [Paris](city)
        - what is the weather like [today](date)
        - will it be sunny in [Rome](city) [on monday](date)
        - forecast for [NYC](city)
        - weather [tomorrow](date) please
    - synonym: New York
      examples: |
        - new york city
    - regex: zipcode
      examples: |
        - \\b[0-9]{5}\\b
    - lookup: city
      examples: |
        - Berlin
        - Paris
        - New York
"""

ADDED_EXAMPLES = """
    version: "3.1"
    nlu:
    - intent: greet
      examples: |
        - howdy partner
    - intent: check_weather
      examples: |
        - umbrella needed in [Stockholm](city) [tomorrow](date)
"""

NEW_INTENT = """
    version: "3.1"
    nlu:
    - intent: ask_time
      examples: |
        - what time is it
        - tell me the time
"""

TINY_DIET = {
    "epochs": 30,
    "transformer_size": 16,
    "number_of_transformer_layers": 1,
    "number_of_attention_heads": 2,
    "embedding_dimension": 8,
    "batch_size": [8, 16],
    "learning_rate": 0.01,
    "early_stopping": False,
}


def tiny_config(**diet: Any) -> Config:
    """Rasa's default NLU pipeline with a tiny DIETClassifier."""
    return Config(
        pipeline=(
            Component("WhitespaceTokenizer"),
            Component("RegexFeaturizer"),
            Component("LexicalSyntacticFeaturizer"),
            Component("CountVectorsFeaturizer"),
            Component("CountVectorsFeaturizer", freeze({"analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4})),
            Component("DIETClassifier", freeze({**TINY_DIET, **diet})),
            Component("EntitySynonymMapper"),
            Component("FallbackClassifier", freeze({"threshold": 0.3, "ambiguity_threshold": 0.1})),
        )
    )


def read_yaml(tmp_path: Path, *documents: str) -> NluData:
    """Write each YAML document to a file in ``tmp_path`` and read them all with the loader."""
    paths = []
    for index, document in enumerate(documents):
        path = tmp_path / f"nlu_{index}.yml"
        path.write_text(textwrap.dedent(document).lstrip("\n"), encoding="utf-8")
        paths.append(path)
    return read_nlu_files(paths)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> NluData:
    return read_yaml(tmp_path_factory.mktemp("data"), NLU_YAML)


@pytest.fixture(scope="module")
def trained(data: NluData, tmp_path_factory: pytest.TempPathFactory) -> tuple[NluModel, Path, list[dict[str, Any]]]:
    """One tiny model, saved; with the progress events it emitted."""
    events: list[dict[str, Any]] = []
    model = train_nlu(data, tiny_config(), progress=lambda e: events.append(dict(e)), seed=7)
    directory = tmp_path_factory.mktemp("model") / "nlu"
    model.save(directory)
    return model, directory, events


def test_training_lowers_the_loss_and_reports_each_epoch(trained: tuple[NluModel, Path, list[dict[str, Any]]]) -> None:
    model, _, events = trained
    summary = model.summary
    assert summary["mode"] == "full"
    assert summary["epochs_run"] == summary["epochs_planned"] == 30
    losses = summary["loss_history"]
    assert losses[-1] < 0.5 * losses[0]
    assert [e["epoch"] for e in events] == list(range(1, 31))
    assert {e["model"] for e in events} == {"nlu"} and {e["phase"] for e in events} == {"train"}
    assert events[-1]["loss"] == pytest.approx(summary["final_loss"])
    assert summary["num_intents"] == 4 and summary["num_entities"] == 2 and summary["num_examples"] == 24
    assert summary["feature_sizes"]["regex"] == 2  # one regex pattern + one lookup table
    json.dumps(summary)  # JSON-able


def test_parse_has_rasa_shape(trained: tuple[NluModel, Path, list[dict[str, Any]]]) -> None:
    model, _, _ = trained
    result = model.parse("fly from Berlin to Paris")
    assert list(result) == ["text", "intent", "entities", "intent_ranking"]
    assert result["text"] == "fly from Berlin to Paris"
    assert result["intent"]["name"] == "book_flight"
    ranking = result["intent_ranking"]
    assert [r["name"] for r in ranking] == sorted({"greet", "goodbye", "book_flight", "check_weather"}, key=lambda n: -next(r["confidence"] for r in ranking if r["name"] == n))
    assert sum(r["confidence"] for r in ranking) == pytest.approx(1.0, abs=1e-5)
    entities = {(e["value"], e["role"]) for e in result["entities"]}
    assert entities == {("Berlin", "departure"), ("Paris", "destination")}
    for entity in result["entities"]:
        assert set(entity) >= {"entity", "value", "start", "end", "confidence_entity", "role", "group", "extractor"}
        assert result["text"][entity["start"] : entity["end"]] == entity["value"]
        assert entity["extractor"] == "DIETClassifier" and 0.0 < entity["confidence_entity"] <= 1.0
    json.dumps(result)


def test_synonyms_map_extracted_values(trained: tuple[NluModel, Path, list[dict[str, Any]]]) -> None:
    model, _, _ = trained
    entities = model.parse("forecast for NYC")["entities"]
    assert [(e["entity"], e["value"], e["processors"]) for e in entities] == [("city", "New York", ["EntitySynonymMapper"])]
    assert entities[0]["start"] == 13 and entities[0]["end"] == 16


def test_fallback_below_threshold(trained: tuple[NluModel, Path, list[dict[str, Any]]]) -> None:
    model, _, _ = trained
    plain = model.parse("good")
    confidence = plain["intent"]["confidence"]
    assert plain["intent"]["name"] in ("greet", "goodbye") and confidence < 1.0
    threshold = (confidence + 1.0) / 2  # just above the model's confidence
    strict = NluModel(
        replace(model.settings, fallback_threshold=threshold),
        model.preprocessor,
        model.labels,
        model.network,
        model.weights,
        model.synonyms,
    )
    result = strict.parse("good")
    assert result["intent"] == {"name": "nlu_fallback", "confidence": threshold}
    assert result["intent_ranking"][0] == {"name": "nlu_fallback", "confidence": threshold}
    assert result["intent_ranking"][1:] == plain["intent_ranking"]
    relaxed = NluModel(
        replace(model.settings, fallback_threshold=confidence / 2, ambiguity_threshold=0.0),
        model.preprocessor,
        model.labels,
        model.network,
        model.weights,
        model.synonyms,
    )
    assert relaxed.parse("good")["intent"] == plain["intent"]


def test_save_load_predicts_bit_identically(trained: tuple[NluModel, Path, list[dict[str, Any]]], data: NluData) -> None:
    model, directory, _ = trained
    assert sorted(p.name for p in directory.iterdir()) == sorted(layout.ALL_FILES)
    loaded = NluModel.load(directory)
    texts = [e.text for e in data.examples] + ["something never seen", "", "!!!", "Berlin Berlin Berlin"]
    assert loaded.parse_batch(texts) == model.parse_batch(texts)
    assert loaded.parse_batch(texts) == [model.parse(t) for t in texts]
    for name, value in model.weights.items():
        assert np.array_equal(loaded.weights[name], value)
    assert loaded.summary == json.loads(json.dumps(model.summary))


def test_numpy_predictor_matches_tensorflow_network(trained: tuple[NluModel, Path, list[dict[str, Any]]], data: NluData) -> None:
    from pipeline.training.nlu import inference
    from pipeline.training.nlu.network import DietNetwork, TrainingOptions
    from pipeline.training.nlu.trainer import featurize, make_batch

    model, _, _ = trained
    network = DietNetwork(model.network, model.weights, TrainingOptions(0.2, 0.0, True, True))
    records = featurize(model.preprocessor, model.labels, data.examples[:8])
    batch = make_batch(records)
    outputs = network.predict_step(batch.features, batch.mask, batch.dense)
    for row, (example, record) in enumerate(zip(data.examples[:8], records)):
        encoded = model.preprocessor.encode(example.text)
        raw = inference.predict(model.weights, model.network, encoded.ids, encoded.positions, record.num_tokens)
        sims = outputs["similarities"].numpy()[row]
        np.testing.assert_allclose(raw.intent_probs, np.exp(sims - sims.max()) / np.exp(sims - sims.max()).sum(), atol=1e-5)
        np.testing.assert_allclose(raw.emissions, outputs["emissions"].numpy()[row, : record.num_tokens], atol=1e-4)
        np.testing.assert_allclose(raw.role_probs.sum(axis=-1), 1.0, atol=1e-5)


def test_training_is_deterministic(data: NluData, trained: tuple[NluModel, Path, list[dict[str, Any]]]) -> None:
    model, _, _ = trained
    again = train_nlu(data, tiny_config(), seed=7)
    for name, value in model.weights.items():
        assert np.array_equal(again.weights[name], value), name


def test_finetune_keeps_vocabulary_ids_and_grows_inputs(
    trained: tuple[NluModel, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    model, directory, _ = trained
    data = read_yaml(tmp_path, NLU_YAML, ADDED_EXAMPLES)
    check_finetune_compatible(directory, data, tiny_config(epochs=40))
    events: list[dict[str, Any]] = []
    tuned = finetune_nlu(directory, data, tiny_config(epochs=40), epoch_fraction=0.5, progress=events.append, seed=7)
    summary = tuned.summary
    assert summary["mode"] == "finetune"
    assert summary["epochs_planned"] == math.ceil(40 * 0.5) == len(events)
    assert {e["phase"] for e in events} == {"finetune"}
    assert summary["new_examples"] == 2 and summary["num_examples"] == 26
    for before, after in zip(model.preprocessor.vocabularies, tuned.preprocessor.vocabularies):
        assert after.keys[: len(before)] == before.keys  # append-only, stable ids
    grown = {spec.name: n for spec, n in zip(tuned.preprocessor.specs, tuned.network.feature_sizes)}
    assert grown["word_1_1"] == model.summary["feature_sizes"]["word_1_1"] + 5  # howdy partner umbrella needed stockholm
    assert summary["features_added"]["word_1_1"] == 5 and summary["features_added"]["regex"] == 0
    assert tuned.weights["embed/3"].shape[0] == tuned.network.feature_sizes[3] > model.network.feature_sizes[3]
    assert tuned.parse("howdy partner")["intent"]["name"] == "greet"
    tuned.save(tmp_path / "tuned")
    assert NluModel.load(tmp_path / "tuned").parse("howdy") == tuned.parse("howdy")


def test_growth_keeps_old_rows_and_zeroes_new_ones(trained: tuple[NluModel, Path, list[dict[str, Any]]]) -> None:
    model, _, _ = trained
    bigger = replace(model.network, feature_sizes=tuple(n + 3 for n in model.network.feature_sizes))
    grown = grow_weights(model.weights, model.network, bigger)
    for i, n in enumerate(model.network.feature_sizes):
        assert np.array_equal(grown[f"embed/{i}"][:n], model.weights[f"embed/{i}"])
        assert not grown[f"embed/{i}"][n:].any() and grown[f"embed/{i}"].shape[0] == n + 3
    with pytest.raises(ValueError, match="shrink"):
        grow_weights(model.weights, model.network, replace(model.network, feature_sizes=(0, 0, 0, 0)))


def test_anchor_pull_keeps_shared_weights_at_the_previous_model(
    trained: tuple[NluModel, Path, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.training.nlu import trainer

    model, directory, _ = trained
    data = read_yaml(tmp_path, NLU_YAML, ADDED_EXAMPLES)
    assert finetune_nlu(directory, data, tiny_config(), epoch_fraction=0.1, seed=7).summary["anchor_pull"] == 0.0
    monkeypatch.setattr(trainer, "ANCHOR_PULL_SPARSE_ONLY", 1.0)  # pulled all the way back after every step
    tuned = finetune_nlu(directory, data, tiny_config(), epoch_fraction=0.1, seed=7)
    assert tuned.summary["anchor_pull"] == 1.0
    for name, value in model.weights.items():
        if not name.startswith("embed/"):
            assert np.array_equal(tuned.weights[name], value), name
    new_rows = tuned.weights["embed/3"][model.network.feature_sizes[3] :]
    assert new_rows.any()  # only the embedding rows learned (the new words' among them)


def _edit_json(path: Path, **changes: Any) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("yaml_edit", "diet", "file_edit", "expected"),
    [
        pytest.param(("- intent: goodbye", "- intent: farewell"), {}, None,
                     ["intent `farewell` added", "intent `goodbye` removed"], id="intent-renamed"),
        pytest.param(("(date)", "(day)"), {}, None, ["entity `day` added", "entity `date` removed"], id="entity-renamed"),
        pytest.param(('"role": "departure"', '"role": "origin"'), {}, None,
                     ["entity role `origin` added", "entity role `departure` removed"], id="role-renamed"),
        pytest.param(None, {"transformer_size": 32}, None,
                     ["config `diet.transformer_size` changed from 16 to 32 (only epochs may change)"], id="config-changed"),
        pytest.param(None, {}, {"model_format_version": "0"},
                     [f"model format version '0' differs from this deltatrain's '{MODEL_FORMAT_VERSION}'"], id="format-version"),
        pytest.param(("- regex: zipcode", "- regex: postcode"), {}, None,
                     ["1 regex/lookup pattern(s) removed (`regex:zipcode:\\b[0-9]{5}\\b`): the RegexFeaturizer"
                      " feature space would shrink from 2 to 1"], id="regex-removed"),
    ],
)
def test_finetune_refusals_name_the_reason(
    trained: tuple[NluModel, Path, list[dict[str, Any]]],
    tmp_path: Path,
    yaml_edit: tuple[str, str] | None,
    diet: dict[str, Any],
    file_edit: dict[str, Any] | None,
    expected: list[str],
) -> None:
    _, directory, _ = trained
    previous = tmp_path / "previous"
    previous.mkdir()
    for path in directory.iterdir():
        (previous / path.name).write_bytes(path.read_bytes())
    if file_edit:
        _edit_json(previous / layout.FORMAT_FILE, **file_edit)
    text = NLU_YAML.replace(*yaml_edit) if yaml_edit else NLU_YAML
    with pytest.raises(FinetuneRefused) as refused:
        check_finetune_compatible(previous, read_yaml(tmp_path, text), tiny_config(**diet))
    assert list(refused.value.reasons) == expected


def test_finetune_allows_epochs_and_fallback_changes(trained: tuple[NluModel, Path, list[dict[str, Any]]], data: NluData) -> None:
    _, directory, _ = trained
    config = tiny_config(epochs=99)
    config = replace(
        config, pipeline=(*config.pipeline[:-1], Component("FallbackClassifier", freeze({"threshold": 0.7})))
    )
    check_finetune_compatible(directory, data, config)  # does not raise


def test_missing_previous_model_is_a_stated_refusal(tmp_path: Path, data: NluData) -> None:
    with pytest.raises(FinetuneRefused) as refused:
        check_finetune_compatible(tmp_path / "nowhere", data, tiny_config())
    assert "format.json is missing" in refused.value.reasons[0]
    with pytest.raises(ModelError, match="format.json is missing"):
        NluModel.load(tmp_path / "nowhere")


def test_training_needs_two_intents(tmp_path: Path) -> None:
    data = read_yaml(tmp_path, NEW_INTENT)
    with pytest.raises(TrainingError, match="at least two intents.*received 1: ask_time"):
        train_nlu(data, tiny_config())


def test_loading_and_parsing_do_not_import_tensorflow(trained: tuple[NluModel, Path, list[dict[str, Any]]]) -> None:
    _, directory, _ = trained
    code = (
        "import sys; from pathlib import Path\n"
        "from pipeline.training.nlu import NluModel, check_finetune_compatible\n"
        f"model = NluModel.load(Path({str(directory)!r}))\n"
        "model.parse('hello there')\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
