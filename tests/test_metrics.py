"""Metrics and the quality gate, with literal inputs, cross-checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from pipeline.data.model import EntitySpan
from pipeline.errors import DataError, UsageError
from pipeline.metrics import (
    GateCheck,
    GateResult,
    classification_report,
    compare_metrics,
    confusion_matrix,
    entity_report,
    headline_metrics,
    report_labels,
)

SCORES = ("precision", "recall", "f1-score")

# ------------------------------------------------------------ classification

CLASSIFICATION_CASES = [
    pytest.param(["a", "b", "a", "b"], ["a", "b", "b", "b"], None, id="binary"),
    pytest.param(
        ["greet", "greet", "bye", "ask", "ask", "ask"],
        ["greet", "bye", "bye", "ask", "greet", "nlu_fallback"],
        None,
        id="multiclass-with-fallback-predicted",
    ),
    pytest.param(["x", "y", "z"], ["x", "y", "z"], None, id="all-correct"),
    pytest.param(["x", "y", "z"], ["y", "z", "x"], None, id="all-wrong"),
    pytest.param(["only"] * 3, ["only"] * 3, None, id="single-label"),
    pytest.param(["a", "b", "c", "c"], ["a", "c", "c", "b"], ["c", "a"], id="labels-subset-reordered"),
    pytest.param(["a", "a", "b"], ["b", "b", "b"], ["a", "b", "never"], id="label-without-support"),
]


@pytest.mark.parametrize(("y_true", "y_pred", "labels"), CLASSIFICATION_CASES)
def test_classification_report_matches_sklearn(y_true, y_pred, labels):
    ours = classification_report(y_true, y_pred, labels=labels)
    theirs = sk.classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)

    expected_labels = labels if labels is not None else sorted(set(y_true) | set(y_pred))
    assert list(report_labels(ours)) == list(expected_labels)
    for label in expected_labels:
        for score in SCORES:
            assert ours[label][score] == pytest.approx(theirs[label][score]), (label, score)
        assert ours[label]["support"] == theirs[label]["support"]
        assert isinstance(ours[label]["support"], int)
    for average in ("macro avg", "weighted avg"):
        for score in (*SCORES, "support"):
            assert ours[average][score] == pytest.approx(theirs[average][score]), (average, score)
    micro = sk.precision_recall_fscore_support(
        y_true, y_pred, labels=expected_labels, average="micro", zero_division=0
    )
    assert [ours["micro avg"][s] for s in SCORES] == pytest.approx(list(micro[:3]))
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))


def test_classification_report_has_rasa_shape_and_confusions():
    report = classification_report(
        ["greet", "greet", "greet", "greet", "greet", "bye"],
        ["greet", "bye", "thanks", "thanks", "nlu_fallback", "bye"],
    )

    assert list(report) == ["bye", "greet", "nlu_fallback", "thanks", "accuracy", "macro avg", "weighted avg", "micro avg"]
    assert report["greet"] == {
        "precision": 1.0,
        "recall": 0.2,
        "f1-score": pytest.approx(1 / 3),
        "support": 5,
        # top two by count, ties by name: thanks (2), then bye before nlu_fallback
        "confused_with": {"thanks": 2, "bye": 1},
    }
    assert report["bye"]["confused_with"] == {}
    assert report["accuracy"] == pytest.approx(2 / 6)
    assert set(report["micro avg"]) == {"precision", "recall", "f1-score", "support"}


def test_classification_report_lists_confusions_with_labels_outside_the_subset():
    report = classification_report(["a", "a", "b"], ["z", "z", "b"], labels=["a", "b"])

    assert report["a"]["confused_with"] == {"z": 2}
    assert report["a"]["recall"] == 0.0


def test_classification_report_of_nothing_is_all_zero():
    report = classification_report([], [])

    assert report_labels(report) == ()
    assert report["accuracy"] == 0.0
    assert report["weighted avg"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}


def test_classification_report_rejects_sequences_of_different_length():
    with pytest.raises(ValueError, match="received 2 and 1"):
        classification_report(["a", "b"], ["a"])


def test_classification_report_rejects_a_label_named_like_a_report_key():
    with pytest.raises(DataError) as caught:
        classification_report(["accuracy", "b"], ["accuracy", "b"])

    assert caught.value.problems[0].code == "reserved-label"
    assert "'accuracy'" in caught.value.problems[0].message


@pytest.mark.parametrize(
    ("labels",),
    [pytest.param(None, id="default-labels"), pytest.param(["c", "b", "a"], id="given-order")],
)
def test_confusion_matrix_matches_sklearn(labels):
    y_true = ["a", "b", "c", "c", "a", "b"]
    y_pred = ["a", "c", "c", "a", "a", "b"]

    names, matrix = confusion_matrix(y_true, y_pred, labels)

    assert names == tuple(labels or ["a", "b", "c"])
    np.testing.assert_array_equal(matrix, sk.confusion_matrix(y_true, y_pred, labels=list(names)))


def test_confusion_matrix_ignores_labels_outside_the_list():
    names, matrix = confusion_matrix(["a", "b", "x"], ["a", "x", "x"], ["a", "b"])

    assert names == ("a", "b")
    assert matrix.tolist() == [[1, 0], [0, 0]]


# ------------------------------------------------------------------ entities


def span(start, end, entity, role=None):
    return EntitySpan(start=start, end=end, entity=entity, value="v", role=role)


def pred(start, end, entity, role=None):
    data = {"start": start, "end": end, "entity": entity, "value": "v", "extractor": "DIETClassifier"}
    if role:
        data["role"] = role
    return data


ENTITY_CASES = [
    # (gold, pred, {label: (tp, fp, fn)}, exact examples)
    pytest.param([[span(0, 5, "city")]], [[pred(0, 5, "city")]], {"city": (1, 0, 0)}, 1, id="exact-match"),
    pytest.param([[span(0, 5, "city")]], [[pred(0, 4, "city")]], {"city": (0, 1, 1)}, 0, id="wrong-boundary"),
    pytest.param(
        [[span(0, 5, "city")]],
        [[pred(0, 5, "person")]],
        {"city": (0, 0, 1), "person": (0, 1, 0)},
        0,
        id="wrong-type",
    ),
    pytest.param([[span(0, 5, "city")]], [[]], {"city": (0, 0, 1)}, 0, id="missed"),
    pytest.param([[]], [[pred(3, 7, "city")]], {"city": (0, 1, 0)}, 0, id="spurious"),
    pytest.param(
        [[span(0, 5, "city")]],
        [[pred(0, 5, "city"), pred(0, 5, "city")]],
        {"city": (1, 1, 0)},
        0,
        id="duplicate-prediction",
    ),
    pytest.param(
        [[span(0, 5, "city"), span(9, 12, "date")], [], [span(1, 2, "city")]],
        [[pred(0, 5, "city"), pred(9, 12, "time")], [], [pred(1, 2, "city")]],
        {"city": (2, 0, 0), "date": (0, 0, 1), "time": (0, 1, 0)},
        2,
        id="several-examples",
    ),
]


@pytest.mark.parametrize(("gold", "predicted", "counts", "exact"), ENTITY_CASES)
def test_entity_report_counts_exact_spans(gold, predicted, counts, exact):
    report = entity_report(gold, predicted)

    assert report_labels(report) == tuple(sorted(counts))
    for label, (tp, fp, fn) in counts.items():
        assert report[label]["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert report[label]["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
        assert report[label]["support"] == tp + fn
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    assert report["micro avg"]["precision"] == pytest.approx(precision)
    assert report["micro avg"]["recall"] == pytest.approx(recall)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert report["micro avg"]["f1-score"] == pytest.approx(f1)
    assert report["accuracy"] == pytest.approx(exact / len(gold))


def test_entity_report_micro_avg_matches_sklearn_on_span_labels():
    # One span per example, every gold span at the same offsets as a predicted one:
    # then span matching is plain classification over the types.
    gold = [[span(0, 3, t)] for t in ["city", "city", "date", "date", "name"]]
    predicted = [[pred(0, 3, t)] for t in ["city", "date", "date", "date", "name"]]

    report = entity_report(gold, predicted)
    theirs = sk.classification_report(
        ["city", "city", "date", "date", "name"], ["city", "date", "date", "date", "name"], output_dict=True
    )

    for label in ("city", "date", "name"):
        for score in SCORES:
            assert report[label][score] == pytest.approx(theirs[label][score])
    assert report["weighted avg"]["f1-score"] == pytest.approx(theirs["weighted avg"]["f1-score"])
    assert report["micro avg"]["f1-score"] == pytest.approx(theirs["accuracy"])
    assert report["city"]["confused_with"] == {"date": 1}


@pytest.mark.parametrize(
    ("include_roles", "labels", "micro_f1"),
    [
        pytest.param(False, ("city",), 1.0, id="types-only"),
        pytest.param(True, ("city#departure", "city#destination"), 0.0, id="with-roles"),
    ],
)
def test_entity_report_roles_only_count_when_asked(include_roles, labels, micro_f1):
    gold = [[span(0, 6, "city", role="departure")]]
    predicted = [[pred(0, 6, "city", role="destination")]]

    report = entity_report(gold, predicted, include_roles=include_roles)

    assert report_labels(report) == labels
    assert report["micro avg"]["f1-score"] == micro_f1


def test_entity_report_rejects_a_span_without_offsets():
    with pytest.raises(TypeError, match="received \\{'entity': 'city'\\}"):
        entity_report([[]], [[{"entity": "city"}]])


def test_entity_report_rejects_lists_of_different_length():
    with pytest.raises(ValueError, match="received 1 and 2"):
        entity_report([[]], [[], []])


# ----------------------------------------------------------------- headlines


def test_headline_metrics_pick_rasa_headline_numbers():
    intents = classification_report(["a", "a", "b", "c"], ["a", "b", "b", "c"])
    entities = entity_report([[span(0, 1, "x")], [span(0, 1, "y")]], [[pred(0, 1, "x")], []])
    story = {"accuracy": 0.97, "conversation_accuracy": {"accuracy": 0.75, "correct": 3, "total": 4}}

    headline = headline_metrics(intents, entities, story)

    assert headline == {
        "intent_f1": pytest.approx(intents["weighted avg"]["f1-score"]),
        "intent_accuracy": 0.75,
        "intent_macro_f1": pytest.approx(intents["macro avg"]["f1-score"]),
        "entity_f1": pytest.approx(2 * 1.0 * 0.5 / 1.5),
        "story_accuracy": 0.75,
    }


@pytest.mark.parametrize(
    ("story", "expected"),
    [
        pytest.param(None, None, id="no-story-report"),
        pytest.param({"accuracy": 0.5}, 0.5, id="plain-accuracy"),
        pytest.param({"conversation_accuracy": {"accuracy": 1.0}}, 1.0, id="conversation-accuracy"),
    ],
)
def test_headline_story_accuracy(story, expected):
    assert headline_metrics(None, None, story)["story_accuracy"] == expected


def test_headline_metrics_without_test_data_measure_nothing():
    headline = headline_metrics(classification_report([], []), entity_report([[]], [[]]), None)

    assert headline == dict.fromkeys(
        ("intent_f1", "intent_accuracy", "intent_macro_f1", "entity_f1", "story_accuracy")
    )


# ---------------------------------------------------------------------- gate

GATE_CASES = [
    # (current, previous, floors, passed, reason)
    pytest.param(
        {"intent_f1": 0.850},
        {"intent_f1": 0.860},
        {"intent_f1": 0.900},
        False,
        "intent F1 0.850 is below the floor 0.900",
        id="floor-fail",
    ),
    pytest.param(
        {"intent_f1": 0.912},
        {"intent_f1": 0.943},
        {"intent_f1": 0.900},
        False,
        "intent F1 0.912 dropped 0.031 below the previous model's 0.943 (allowed drop 0.020)",
        id="drop-fail",
    ),
    pytest.param(
        {"entity_f1": 0.700},
        {"entity_f1": 0.900},
        {"entity_f1": 0.800},
        False,
        "entity F1 0.700 is below the floor 0.800; "
        "entity F1 0.700 dropped 0.200 below the previous model's 0.900 (allowed drop 0.020)",
        id="floor-and-drop-fail",
    ),
    pytest.param(
        {"intent_f1": 0.930},
        {"intent_f1": 0.940},
        {"intent_f1": 0.900},
        True,
        "intent F1 0.930 meets the floor 0.900 and is 0.010 below the previous model's 0.940 (allowed drop 0.020)",
        id="both-pass",
    ),
    pytest.param(
        {"intent_f1": 0.923},
        {"intent_f1": 0.943},
        {"intent_f1": None},
        True,
        "intent F1 0.923 is 0.020 below the previous model's 0.943 (allowed drop 0.020)",
        id="drop-exactly-allowed",
    ),
    pytest.param(
        {"intent_f1": 0.950},
        {"intent_f1": 0.940},
        {"intent_f1": 0.900},
        True,
        "intent F1 0.950 meets the floor 0.900 and is not below the previous model's 0.940",
        id="improved",
    ),
    pytest.param(
        {"intent_f1": 0.950},
        None,
        {"intent_f1": 0.900},
        True,
        "intent F1 0.950 meets the floor 0.900 and has no previous model to compare",
        id="missing-previous-pass",
    ),
    pytest.param(
        {"intent_f1": 0.850},
        None,
        {"intent_f1": 0.900},
        False,
        "intent F1 0.850 is below the floor 0.900",
        id="missing-previous-floor-fail",
    ),
    pytest.param(
        {"story_accuracy": 0.5},
        {"intent_f1": 0.9},
        {"story_accuracy": None},
        True,
        "story accuracy 0.500 has no previous value to compare",
        id="previous-did-not-measure-it",
    ),
    pytest.param(
        {"entity_f1": None},
        {"entity_f1": 0.9},
        {"entity_f1": 0.8},
        True,
        "entity F1 not measured",
        id="none-metric",
    ),
    pytest.param({}, {"entity_f1": 0.9}, {"entity_f1": 0.8}, True, "entity F1 not measured", id="absent-metric"),
    pytest.param(
        {"slot_f1": 0.5},
        {"slot_f1": 0.9},
        {},
        False,
        "slot f1 0.500 dropped 0.400 below the previous model's 0.900 (allowed drop 0.020)",
        id="metric-without-floor-still-drop-checked",
    ),
]


@pytest.mark.parametrize(("current", "previous", "floors", "passed", "reason"), GATE_CASES)
def test_quality_gate(current, previous, floors, passed, reason):
    result = compare_metrics(current, previous, max_drop=0.02, floors=floors)

    assert isinstance(result, GateResult)
    assert result.passed is passed
    assert len(result.checks) == 1
    assert result.checks[0].passed is passed
    assert result.checks[0].reason == reason


def test_quality_gate_checks_floors_first_then_other_metrics_and_records_inputs():
    result = compare_metrics(
        {"intent_accuracy": 0.9, "intent_f1": 0.91, "entity_f1": 0.5},
        {"intent_f1": 0.92, "entity_f1": 0.6, "intent_accuracy": 0.9},
        max_drop=0.05,
        floors={"intent_f1": 0.8, "entity_f1": None},
    )

    assert [c.name for c in result.checks] == ["intent_f1", "entity_f1", "intent_accuracy"]
    assert result.checks[0] == GateCheck(
        name="intent_f1",
        value=0.91,
        previous=0.92,
        floor=0.8,
        max_drop=0.05,
        passed=True,
        reason=result.checks[0].reason,
    )
    assert result.passed is False
    assert [c.name for c in result.failures] == ["entity_f1"]
    assert len(result.reasons) == 3


@pytest.mark.parametrize(
    ("max_drop", "floors", "match"),
    [
        pytest.param(-0.1, {}, "max_drop", id="negative-drop"),
        pytest.param(0.02, {"intent_f1": 90}, "floor of intent_f1", id="floor-as-percent"),
    ],
)
def test_quality_gate_rejects_thresholds_outside_zero_one(max_drop, floors, match):
    with pytest.raises(UsageError, match=match):
        compare_metrics({"intent_f1": 0.9}, None, max_drop=max_drop, floors=floors)
