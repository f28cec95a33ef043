"""Test a model archive on held-out NLU data and test stories; write Rasa-shaped reports."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pipeline.archive import CORE_DIR, NLU_DIR, extract_archive
from pipeline.data.model import NluData, Story
from pipeline import evaluation as _reports
from pipeline.evaluation import NluEvaluation, evaluate_nlu, write_nlu_reports
from pipeline.metrics import headline_metrics

STORY_REPORT = "story_report.json"
FAILED_STORIES = "failed_test_stories.yml"
STORIES_JUNIT = "stories_junit.xml"
#: Every file a test run may write; nothing else in a report folder is ever removed.
REPORT_FILES: tuple[str, ...] = (
    _reports.INTENT_REPORT_FILE, _reports.ENTITY_REPORT_FILE, _reports.INTENT_ERRORS_FILE,
    _reports.NLU_JUNIT_FILE, _reports.CONFUSION_MATRIX_FILE, _reports.HISTOGRAM_FILE,
    _reports.RESPONSE_REPORT_FILE, _reports.RESPONSE_ERRORS_FILE, _reports.RESPONSE_CONFUSION_MATRIX_FILE,
    _reports.RESPONSE_HISTOGRAM_FILE, STORY_REPORT, FAILED_STORIES, STORIES_JUNIT,
)


def remove_report_files(out_dir: Path) -> None:
    """Delete the report files an earlier test run wrote into ``out_dir``; leave every other file."""
    for name in REPORT_FILES:
        (out_dir / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class ModelTestResult:
    """What testing one model measured, and the report files written."""

    nlu: NluEvaluation | None
    stories: Any | None  # pipeline.training.core.StoryEvaluation
    metrics: dict[str, float | None]
    files: tuple[Path, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "files": [str(f) for f in self.files],
            "stories": None if self.stories is None else {
                "num_stories": self.stories.num_stories,
                "num_correct": self.stories.num_correct,
                "accuracy": self.stories.accuracy,
            },
        }


def test_model(
    archive: Path,
    test_nlu: NluData,
    test_stories: Sequence[Story],
    out_dir: Path | None = None,
) -> ModelTestResult:
    """Load the archive's models, run the tests, write reports to ``out_dir`` when given."""
    with tempfile.TemporaryDirectory(prefix="deltatrain-test-") as tmp:
        model_dir = extract_archive(archive, Path(tmp))
        return test_model_dir(model_dir, test_nlu, test_stories, out_dir)


def test_model_dir(
    model_dir: Path,
    test_nlu: NluData,
    test_stories: Sequence[Story],
    out_dir: Path | None = None,
) -> ModelTestResult:
    """Like :func:`test_model` for an extracted model directory."""
    files: list[Path] = []
    nlu_model = None
    if (model_dir / NLU_DIR).is_dir():
        from pipeline.training.nlu import NluModel

        nlu_model = NluModel.load(model_dir / NLU_DIR)
    evaluation = None
    if nlu_model is not None and test_nlu.examples:
        evaluation = evaluate_nlu(nlu_model.parse_batch, test_nlu)
        if out_dir is not None:
            files += write_nlu_reports(evaluation, out_dir)
    story_eval = None
    if test_stories and (model_dir / CORE_DIR).is_dir():
        from pipeline.training.core import CoreModel, evaluate_stories

        core_model = CoreModel.load(model_dir / CORE_DIR)
        story_eval = evaluate_stories(core_model, test_stories, parse=nlu_model.parse if nlu_model else None)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            report = out_dir / STORY_REPORT
            report.write_text(json.dumps(story_eval.to_dict(), indent=2) + "\n", encoding="utf-8")
            failed = out_dir / FAILED_STORIES
            failed.write_text(story_eval.render_failed_stories_yaml(), encoding="utf-8")
            junit = out_dir / STORIES_JUNIT
            junit.write_text(story_eval.render_junit_xml(), encoding="utf-8")
            files += [report, failed, junit]
    metrics = headline_metrics(
        evaluation.intent_report if evaluation else None,
        evaluation.entity_report if evaluation else None,
        {"accuracy": story_eval.accuracy} if story_eval is not None else None,
        response_report=evaluation.response_report if evaluation else None,
    )
    return ModelTestResult(evaluation, story_eval, metrics, tuple(files))
