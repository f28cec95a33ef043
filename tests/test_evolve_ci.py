"""The CI step compares with the previous model's stored predictions; the per-intent gate falls back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest

from pipeline.cli import main
from pipeline.predictions import PREDICTIONS_KEY
from tests.helpers import copy_into_git_repo
from tests.test_e2e import _read_outputs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "assistant"
TINY = ["--epochs", "2"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("evolve") / "assistant"
    copy_into_git_repo(EXAMPLE, work)
    assert main(["ci", "-C", str(work), *TINY], environ={}) == 0
    return work


def _metrics_file(work: Path) -> Path:
    latest = json.loads((work / ".deltatrain" / "store" / "manifest.json").read_text())["latest"]
    return work / ".deltatrain" / "store" / "models" / latest / "metrics.json"


def test_a_model_stores_its_test_predictions(first_run: Path) -> None:
    stored = json.loads(_metrics_file(first_run).read_text())[PREDICTIONS_KEY]
    tests = (EXAMPLE / "tests" / "nlu_test.yml").read_text()
    assert stored["format"] == 1 and len(stored["rows"]) >= 10
    assert not any(f"- {word}" in tests for row in stored["rows"] for word in [row[0]])  # hashes, not text


def test_per_intent_gate_names_the_intent_and_falls_back_to_full(first_run: Path, tmp_path: Path) -> None:
    work = tmp_path / "assistant"
    shutil.copytree(first_run, work)
    repo = git.Repo(work)
    # the previous model claims it got every test utterance right: any intent the new one misses dropped
    metrics_file = _metrics_file(work)
    metrics = json.loads(metrics_file.read_text())
    for row in metrics[PREDICTIONS_KEY]["rows"]:
        row[2], row[3], row[4] = row[1], 1.0, row[5]
    metrics_file.write_text(json.dumps(metrics))
    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("    - cya\n", "    - cya\n    - farewell\n"))
    repo.git.add(A=True)
    repo.index.commit("one more goodbye")
    report, output, summary = tmp_path / "report.json", tmp_path / "output", tmp_path / "summary.md"
    output.write_text("")
    code = main(
        ["ci", "-C", str(work), *TINY, "--max-drop", "1", "--max-intent-drop", "0", "--min-intent-support", "1",
         "--report-json", str(report)],
        environ={"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)},
    )
    data = json.loads(report.read_text())
    assert code == 3, data["reasons"]
    assert data["fell_back_to_full"] is True and data["decision"] == "full"
    failed = [c for c in data["gate"]["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["intent_f1_per_intent"]
    dropped = failed[0]["labels"]
    assert dropped and all(f"`{intent}`" in failed[0]["reason"] for intent in dropped)
    assert any("finetuned model failed the quality gate: per-intent F1" in r for r in data["reasons"])
    assert _read_outputs(output)["dropped-intents"] == ",".join(dropped)
    diff = data["prediction_diff"]
    assert diff["broken"] and not diff["fixed"]
    # a broken utterance is a wrong intent or wrong entities; dropped intents also count new false positives
    assert {i["intent"] for i in diff["intents"] if i["delta"] < 0} >= set(dropped)
    text = summary.read_text()
    assert "Predictions vs the previous model" in text and diff["broken"][0]["text"].split()[0] in text


def test_changed_tests_are_compared_by_testing_the_downloaded_previous_model(first_run: Path, tmp_path: Path) -> None:
    work = tmp_path / "assistant"
    shutil.copytree(first_run, work)
    repo = git.Repo(work)
    tests = work / "tests" / "nlu_test.yml"
    tests.write_text(tests.read_text().replace("    - see ya\n", "    - see ya\n    - later alligator\n"))
    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("    - cya\n", "    - cya\n    - farewell\n"))
    repo.git.add(A=True)
    repo.index.commit("one more goodbye, one more test")
    report = tmp_path / "report.json"
    code = main(["ci", "-C", str(work), *TINY, "--max-drop", "1", "--no-upload", "--report-json", str(report)], environ={})
    data = json.loads(report.read_text())
    assert code == 0 and data["decision"] == "finetune"
    texts = [line for line in tests.read_text().splitlines() if line.startswith("    - ")]
    assert data["prediction_diff"]["compared"] == len(texts)  # the new test utterance too
