"""The Rasa defaults deltatrain changes for a config reach the CI result and its job summary (issue 18)."""

from __future__ import annotations

from pipeline.ci import CiResult, rasa_defaults_differing
from pipeline.decision import Decision
from pipeline.report import render_summary

LINES = [
    "DIETClassifier.learning_rate: 0.005 (Rasa: 0.001); measured on HWU64",
    "DIETClassifier.embedding_dimension: 32 (Rasa: 20); <b>not</b> markup",
]


def _metadata(action: str, lines: list[str] | None) -> dict:
    summary = {} if lines is None else {"rasa_defaults_differing": lines}
    return {"parts": {"nlu": {"action": action, "summary": summary}, "core": {"action": "keep", "summary": {}}}}


def test_lines_are_taken_from_a_trained_nlu_part_only() -> None:
    assert rasa_defaults_differing(_metadata("full", LINES)) == tuple(LINES)
    assert rasa_defaults_differing(_metadata("finetune", LINES)) == tuple(LINES)
    assert rasa_defaults_differing(_metadata("keep", LINES)) == ()  # a repackaged model trained nothing
    assert rasa_defaults_differing(_metadata("full", None)) == ()  # deltatrain's own config: nothing differs
    assert rasa_defaults_differing({}) == ()


def test_summary_lists_them_in_a_collapsed_section_and_the_json_report_carries_them() -> None:
    result = CiResult(decision=Decision("full", "full", "keep", ("x",)), rasa_defaults_differing=tuple(LINES))
    text = render_summary(result)
    assert "<details><summary>2 Rasa default(s) deltatrain changes for this config" in text
    assert "- DIETClassifier.learning_rate: 0.005 (Rasa: 0.001); measured on HWU64" in text
    assert "<b>not</b>" not in text  # text from the training summary is rendered inert
    assert result.to_dict()["rasa_defaults_differing"] == LINES
    assert "Rasa default" not in render_summary(CiResult(decision=Decision("full", "full", "keep", ("x",))))
