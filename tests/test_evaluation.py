"""NLU evaluation runner, report writers and cross-validation folds."""

from __future__ import annotations

import json
import struct
from collections import Counter

import pytest

from pipeline.data.model import EntitySpan, NluData, NluExample, Synonym
from pipeline.errors import ModelError, UsageError
from pipeline.evaluation import (
    NO_INTENT,
    NluEvaluation,
    cross_validation_folds,
    evaluate_nlu,
    render_confusion_matrix,
    render_metrics_plot,
    write_metrics_plot,
    write_nlu_reports,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The test set and what a fake model answers for each text.
TEST_DATA = NluData(
    examples=(
        NluExample("hello there", "greet"),
        NluExample("hi", "greet"),
        NluExample("good morning", "greet"),
        NluExample("bye", "goodbye"),
        NluExample("fly to Paris", "book", (EntitySpan(7, 12, "city", "Paris"),)),
        NluExample("fly to Rome tomorrow", "book", (EntitySpan(7, 11, "city", "Rome"), EntitySpan(12, 20, "date", "tomorrow"))),
        NluExample("what is your name", "chitchat", response_key="ask_name"),
    )
)

ANSWERS = {
    "hello there": ("greet", 0.98, []),
    "hi": ("goodbye", 0.61, []),
    "good morning": ("nlu_fallback", 0.30, []),
    "bye": ("goodbye", 0.95, []),
    "fly to Paris": ("book", 0.90, [{"entity": "city", "value": "Paris", "start": 7, "end": 12, "extractor": "DIET"}]),
    "fly to Rome tomorrow": (
        "book",
        0.85,
        [
            {"entity": "city", "value": "Rome", "start": 7, "end": 11},
            {"entity": "time", "value": "tomorrow", "start": 12, "end": 20},
        ],
    ),
    "what is your name": ("chitchat/ask_name", 0.77, []),
}


def fake_parse_batch(answers):
    """A parse_batch function that answers from a dict, in Rasa's parse shape."""
    calls = []

    def parse_batch(texts):
        calls.append(list(texts))
        results = []
        for text in texts:
            name, confidence, entities = answers[text]
            results.append(
                {
                    "text": text,
                    "intent": {"name": name, "confidence": confidence},
                    "intent_ranking": [{"name": name, "confidence": confidence}],
                    "entities": entities,
                }
            )
        return results

    parse_batch.calls = calls
    return parse_batch


@pytest.fixture(scope="module")
def evaluation() -> NluEvaluation:
    return evaluate_nlu(fake_parse_batch(ANSWERS), TEST_DATA)


# ------------------------------------------------------------------ evaluate


def test_evaluate_nlu_parses_all_texts_in_one_batch():
    parse_batch = fake_parse_batch(ANSWERS)

    evaluate_nlu(parse_batch, TEST_DATA)

    assert parse_batch.calls == [[e.text for e in TEST_DATA.examples]]


def test_evaluate_nlu_intent_report(evaluation):
    report = evaluation.intent_report

    # nlu_fallback is a wrong label; the retrieval intent counts as its base intent
    assert list(report)[:5] == ["book", "chitchat", "goodbye", "greet", "nlu_fallback"]
    assert report["accuracy"] == pytest.approx(5 / 7)
    assert report["greet"]["support"] == 3
    assert report["greet"]["recall"] == pytest.approx(1 / 3)
    assert report["greet"]["confused_with"] == {"goodbye": 1, "nlu_fallback": 1}
    assert report["goodbye"]["precision"] == pytest.approx(0.5)
    assert report["chitchat"]["f1-score"] == 1.0
    assert report["nlu_fallback"]["support"] == 0


def test_evaluate_nlu_entity_report(evaluation):
    report = evaluation.entity_report

    assert report["city"] == {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 2, "confused_with": {}}
    assert report["date"]["recall"] == 0.0
    assert report["date"]["confused_with"] == {"time": 1}
    assert report["time"]["precision"] == 0.0
    # 2 correct of 3 predicted and of 3 gold
    assert report["micro avg"]["f1-score"] == pytest.approx(2 / 3)
    assert report["accuracy"] == pytest.approx(6 / 7)


def test_evaluate_nlu_errors_like_rasa_intent_errors_json(evaluation):
    assert list(evaluation.errors) == [
        {"text": "hi", "intent": "greet", "intent_prediction": {"name": "goodbye", "confidence": 0.61}},
        {"text": "good morning", "intent": "greet", "intent_prediction": {"name": "nlu_fallback", "confidence": 0.30}},
    ]


def test_evaluate_nlu_predictions_and_headline(evaluation):
    assert len(evaluation.predictions) == len(TEST_DATA.examples)
    fly = evaluation.predictions[5]
    assert fly["intent"] == "book"
    assert fly["entities"][1] == {"entity": "date", "value": "tomorrow", "start": 12, "end": 20}
    assert fly["entity_predictions"][1]["entity"] == "time"
    assert evaluation.predictions[6]["intent_prediction"] == {"name": "chitchat", "confidence": 0.77}

    assert evaluation.headline["intent_accuracy"] == pytest.approx(5 / 7)
    assert evaluation.headline["intent_f1"] == pytest.approx(evaluation.intent_report["weighted avg"]["f1-score"])
    assert evaluation.headline["entity_f1"] == pytest.approx(2 / 3)
    assert evaluation.headline["story_accuracy"] is None


def test_evaluate_nlu_counts_a_missing_intent_as_wrong():
    def parse_batch(texts):
        return [{"text": t, "intent": None, "entities": []} for t in texts]

    result = evaluate_nlu(parse_batch, NluData(examples=(NluExample("hi", "greet"),)))

    assert result.errors[0]["intent_prediction"] == {"name": NO_INTENT, "confidence": 0.0}
    assert result.headline["intent_accuracy"] == 0.0


def test_evaluate_nlu_of_empty_test_data_measures_nothing():
    parse_batch = fake_parse_batch({})

    result = evaluate_nlu(parse_batch, NluData())

    assert parse_batch.calls == []
    assert set(result.headline.values()) == {None}
    assert result.errors == ()


@pytest.mark.parametrize(
    ("parse_batch", "match"),
    [
        pytest.param(lambda texts: [], "returned 0 parse results for 2", id="too-few-results"),
        pytest.param(lambda texts: ["greet"] * len(texts), "is not a mapping", id="not-a-mapping"),
        pytest.param(
            lambda texts: [{"intent": {"name": "greet"}, "entities": [{"entity": "city"}]} for _ in texts],
            "entities without 'entity', 'start' and 'end'",
            id="entity-without-offsets",
        ),
    ],
)
def test_evaluate_nlu_refuses_malformed_parse_output(parse_batch, match):
    data = NluData(examples=(NluExample("hi", "greet"), NluExample("bye", "goodbye")))

    with pytest.raises(ModelError, match=match):
        evaluate_nlu(parse_batch, data)


# --------------------------------------------------------------------- write


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_write_nlu_reports(evaluation, tmp_path):
    out_dir = tmp_path / "results" / "nlu"

    paths = write_nlu_reports(evaluation, out_dir)

    assert [p.name for p in paths] == [
        "intent_report.json",
        "entity_report.json",
        "intent_errors.json",
        "nlu_junit.xml",
        "intent_confusion_matrix.png",
        "intent_histogram.png",
    ]
    assert all(p.parent == out_dir for p in paths)
    intent_report = json.loads((out_dir / "intent_report.json").read_text())
    assert intent_report == json.loads(json.dumps(evaluation.intent_report))
    assert set(intent_report["greet"]) == {"precision", "recall", "f1-score", "support", "confused_with"}
    assert {"accuracy", "macro avg", "weighted avg", "micro avg"} <= set(intent_report)
    entity_report = json.loads((out_dir / "entity_report.json").read_text())
    assert entity_report["micro avg"]["support"] == 3
    errors = json.loads((out_dir / "intent_errors.json").read_text())
    assert [e["text"] for e in errors] == ["hi", "good morning"]
    for name in ("intent_confusion_matrix.png", "intent_histogram.png"):
        data = (out_dir / name).read_bytes()
        width, height = png_size(data)
        assert width >= 400 and height >= 300, name
        assert len(data) > 5_000, name


def test_confusion_matrix_grows_with_64_intents():
    intents = [f"intent_{i:02d}_with_a_long_name" for i in range(64)]
    y_true = [intents[i % 64] for i in range(256)]
    y_pred = [intents[(i + (i % 7 == 0)) % 64] for i in range(256)]

    small_w, small_h = png_size(render_confusion_matrix(["a", "b"], ["a", "a"]))
    large_w, large_h = png_size(render_confusion_matrix(y_true, y_pred))

    assert large_w > 2 * small_w and large_h > 2 * small_h


def test_metrics_plot(tmp_path):
    history = [
        {"version": "v1", "intent_f1": 0.81, "entity_f1": None},
        {"version": "v2", "intent_f1": 0.86, "entity_f1": 0.7},
        {"version": "v3", "intent_f1": 0.84, "entity_f1": 0.74, "story_accuracy": 0.9},
    ]

    data = render_metrics_plot(history)
    path = write_metrics_plot(history, tmp_path / "history.png")

    assert png_size(data)[0] >= 400
    assert path.read_bytes() == data


# --------------------------------------------------------------------- folds

FOLD_DATA = NluData(
    examples=tuple(
        NluExample(f"{intent} {i}", intent)
        for intent, count in (("greet", 7), ("goodbye", 5), ("book", 3), ("rare", 1))
        for i in range(count)
    ),
    synonyms=(Synonym("New York", ("NYC",)),),
)


@pytest.mark.parametrize("folds", [2, 3, 5], ids=lambda k: f"{k}-folds")
def test_cross_validation_folds_partition_and_stratify(folds):
    pairs = cross_validation_folds(FOLD_DATA, folds)

    assert len(pairs) == folds
    test_texts = [e.text for _, test in pairs for e in test.examples]
    assert sorted(test_texts) == sorted(e.text for e in FOLD_DATA.examples)
    for train, test in pairs:
        assert set(train.examples).isdisjoint(test.examples)
        assert len(train.examples) + len(test.examples) == len(FOLD_DATA.examples)
        assert train.synonyms == FOLD_DATA.synonyms and test.synonyms == ()
        order = [FOLD_DATA.examples.index(e) for e in train.examples]
        assert order == sorted(order)
    sizes = [len(test.examples) for _, test in pairs]
    assert max(sizes) - min(sizes) <= 1
    for intent in FOLD_DATA.intents:
        per_fold = [Counter(e.intent for e in test.examples)[intent] for _, test in pairs]
        assert max(per_fold) - min(per_fold) <= 1, intent


def test_cross_validation_folds_depend_only_on_the_seed():
    def split(seed):
        return [[e.text for e in test.examples] for _, test in cross_validation_folds(FOLD_DATA, 3, seed=seed)]

    assert split(42) == split(42)
    assert split(42) != split(7)


@pytest.mark.parametrize(
    ("folds", "match"),
    [
        pytest.param(1, "at least 2 folds", id="one-fold"),
        pytest.param(17, "cannot make 17 folds from 16 examples", id="more-folds-than-examples"),
    ],
)
def test_cross_validation_folds_refuse_impossible_splits(folds, match):
    with pytest.raises(UsageError, match=match):
        cross_validation_folds(FOLD_DATA, folds)


def test_nlu_junit_report_has_one_case_per_example_and_fails_the_wrong_ones(evaluation, tmp_path):
    import xml.etree.ElementTree as ET

    from pipeline.evaluation import render_nlu_junit_xml

    root = ET.fromstring(render_nlu_junit_xml(evaluation))
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(evaluation.predictions)
    failed = {case.get("name"): case.find("failure") for case in cases if case.find("failure") is not None}
    wrong_intent = {e["text"] for e in evaluation.errors}
    assert wrong_intent <= set(failed)
    for text in wrong_intent:
        assert "intent: expected" in failed[text].get("message")
    wrong_entities = {p["text"] for p in evaluation.predictions
                      if {(e["start"], e["end"], e["entity"]) for e in p["entities"]}
                      != {(e["start"], e["end"], e["entity"]) for e in p["entity_predictions"]}}
    assert set(failed) == wrong_intent | wrong_entities
    assert root.get("failures") == str(len(failed)) and root.get("tests") == str(len(cases))
