"""Stored per-utterance predictions, the diff between two models and the per-intent gate (pure)."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import UsageError
from pipeline.evaluation import evaluate_nlu
from pipeline.metrics import INTENT_DROP_CHECK, check_intent_drops
from pipeline.predictions import (
    build_prediction_rows,
    compute_prediction_diff,
    parse_predictions,
    render_predictions,
    text_hash,
)
from tests.test_evaluation import ANSWERS, TEST_DATA, fake_parse_batch

# the new "model" fixes `hi`, breaks `hello there`, `bye` and `fly to Paris` (an entity lost), keeps the rest
NEW_ANSWERS = {
    **ANSWERS,
    "hi": ("greet", 0.70, []),
    "bye": ("greet", 0.60, []),
    "hello there": ("goodbye", 0.55, []),
    "fly to Paris": ("book", 0.91, []),
}


def _rows(answers):
    return build_prediction_rows(evaluate_nlu(fake_parse_batch(answers), TEST_DATA).predictions)


def test_diff_lists_fixed_and_broken_utterances_and_intents_by_harm() -> None:
    diff = compute_prediction_diff(_rows(ANSWERS), _rows(NEW_ANSWERS), [e.text for e in TEST_DATA.examples])
    assert diff.compared == len(TEST_DATA.examples)
    assert [(f.text, f.gold, f.old_intent, f.new_intent) for f in diff.fixed] == [("hi", "greet", "goodbye", "greet")]
    assert [(b.text, b.old_intent, b.new_intent, b.entities_changed) for b in diff.broken] == [
        ("fly to Paris", "book", "book", True),  # most confident first
        ("bye", "goodbye", "greet", False),
        ("hello there", "greet", "goodbye", False),
    ]
    # goodbye 0.667 -> 0 (its one utterance lost), greet 0.5 -> 0.4 (one fixed, one more false positive)
    assert [(i.intent, round(i.delta, 3)) for i in diff.intents[:2]] == [("goodbye", -0.667), ("greet", -0.1)]
    assert [i.delta for i in diff.intents] == sorted(i.delta for i in diff.intents)
    assert json.loads(json.dumps(diff.to_dict()))["broken"][2]["text"] == "hello there"


def test_stored_rows_round_trip_and_hold_no_text() -> None:
    rows = _rows(ANSWERS)
    document = json.loads(json.dumps(render_predictions(rows)))
    assert parse_predictions(document) == rows
    assert "hello there" not in json.dumps(document) and text_hash("hello there") in json.dumps(document)
    assert parse_predictions({"format": 99, "rows": []}) is None
    assert parse_predictions(None) is None


def test_only_shared_utterances_with_the_same_gold_are_compared() -> None:
    old = _rows(ANSWERS)
    new = [r for r in _rows(NEW_ANSWERS) if r.text_hash != text_hash("hi")]
    diff = compute_prediction_diff(old, new, [e.text for e in TEST_DATA.examples])
    assert diff.compared == len(TEST_DATA.examples) - 1 and not diff.fixed


@pytest.mark.parametrize(
    ("rows", "max_drop", "min_support", "passed", "labels"),
    [
        pytest.param([("a", 10, 0.9, 0.5), ("b", 10, 0.9, 0.8), ("c", 2, 1.0, 0.0)], 0.2, 5, False, ("a",), id="one-drops"),
        pytest.param([("a", 10, 0.9, 0.5), ("b", 10, 0.9, 0.6)], 0.2, 5, False, ("a", "b"), id="worst-first"),
        pytest.param([("a", 10, 0.9, 0.8), ("c", 2, 1.0, 0.0)], 0.2, 5, True, (), id="small-support-skipped"),
        pytest.param([("c", 2, 1.0, 0.0)], 0.2, 1, False, ("c",), id="support-lowered"),
    ],
)
def test_per_intent_gate_names_the_intents(rows, max_drop, min_support, passed, labels) -> None:
    check = check_intent_drops(rows, max_drop, min_support=min_support)
    assert check.name == INTENT_DROP_CHECK and check.passed is passed and check.labels == labels
    for label in labels:
        assert f"`{label}`" in check.reason


def test_per_intent_gate_rejects_a_drop_outside_zero_one() -> None:
    with pytest.raises(UsageError, match="max_intent_drop"):
        check_intent_drops([], 1.5)


def test_cli_help_states_the_per_intent_support_default() -> None:
    from pipeline.cli import build_parser
    from pipeline.metrics import MIN_INTENT_SUPPORT

    ci = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if "--max-intent-drop" in a.format_help())  # type: ignore[union-attr]
    assert f"(default {MIN_INTENT_SUPPORT})" in " ".join(ci.format_help().split())


def test_summary_renders_utterances_from_data_inert_and_caps_each_list() -> None:
    from pipeline.ci import CiResult
    from pipeline.decision import Decision
    from pipeline.predictions import FlippedUtterance, IntentChange, PredictionDiff
    from pipeline.report import TOP_CHANGES, render_summary

    hostile = "<img src=x onerror=alert(1)> | `tick`\n## not a heading"
    broken = tuple(FlippedUtterance(f"{hostile} {i}", "greet", "greet", 0.9, "bye<b>", 0.8, False) for i in range(12))
    diff = PredictionDiff(12, (), broken, (IntentChange("greet<script>", 12, 1.0, 0.0),))
    text = render_summary(CiResult(decision=Decision("finetune", "finetune", "keep", ("x",)), prediction_diff=diff))
    assert "<img" not in text  # free text: HTML escaped
    assert "`greet<script>`" in text and "`bye<b>`" in text  # names: inside code spans, where HTML is inert
    assert "\n## not a heading" not in text
    rows = [line for line in text.splitlines() if "onerror" in line]
    assert len(rows) == TOP_CHANGES and all(line.startswith("| ") and line.count(" | ") == 2 for line in rows)
    assert "Broken (top 10 of 12)" in text and "-1.000" in text
