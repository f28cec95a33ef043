"""train / test / parse end to end on the example assistant with tiny epochs."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.train import train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "assistant"
TINY = {"epochs": 2}

pytestmark = pytest.mark.slow


def _members(archive: str) -> dict[str, str]:
    """Archive member name -> sha256 of its bytes (directories map to '')."""
    digests = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            digests[member.name] = hashlib.sha256(handle.read()).hexdigest() if handle else ""
    return digests


def _metadata(archive: str) -> dict:
    with tarfile.open(archive) as tar:
        return json.load(tar.extractfile("metadata.json"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny model of the example assistant, trained once for this module."""
    work = tmp_path_factory.mktemp("train") / "assistant"
    shutil.copytree(EXAMPLE, work)
    result = train(work / "domain.yml", work / "config.yml", [work / "data"], output=work / "models",
                   fixed_model_name="first", nlu_additional_arguments=TINY, core_additional_arguments=TINY,
                   persist_nlu_training_data=True)
    return work, str(result.model)


def _copy(trained: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    work, model = trained
    target = tmp_path / "assistant"
    shutil.copytree(work, target)
    return target, str(target / "models" / Path(model).name)


def test_archive_layout(trained: tuple[Path, str]) -> None:
    _, model = trained
    assert model.endswith("/first.tar.gz")
    names = set(_members(model))
    for required in ("metadata.json", "fingerprint.json", "domain.yml", "nlu_training_data.yml"):
        assert required in names
    assert any(n.startswith("nlu/") for n in names) and any(n.startswith("core/") for n in names)
    metadata = _metadata(model)
    assert metadata["mode"] == "full"
    assert metadata["model_format"] and metadata["trained_at"] and metadata["deltatrain_version"]
    assert metadata["data"]["examples"] == 94
    assert metadata["parts"]["nlu"]["action"] == "full"


def test_unchanged_data_retrains_nothing(trained: tuple[Path, str], tmp_path: Path) -> None:
    work, model = _copy(trained, tmp_path)
    result = train(work / "domain.yml", work / "config.yml", [work / "data"], output=work / "models")
    assert result.code == 0
    assert result.model == model


def test_responses_only_repackages_with_identical_weights(trained: tuple[Path, str], tmp_path: Path) -> None:
    work, model = _copy(trained, tmp_path)
    domain = work / "domain.yml"
    domain.write_text(domain.read_text().replace("Goodbye, have a good trip!", "Bye, safe travels!"))
    result = train(work / "domain.yml", work / "config.yml", [work / "data"], output=work / "models")
    assert result.code == 4
    before, after = _members(model), _members(str(result.model))
    weights = [n for n in before if n.startswith(("nlu/", "core/")) and before[n]]
    assert weights and all(before[n] == after[n] for n in weights)
    assert before["domain.yml"] != after["domain.yml"]
    assert _metadata(str(result.model))["mode"] == "repackage"


def test_finetune_after_examples_added_records_parent(trained: tuple[Path, str], tmp_path: Path) -> None:
    work, model = _copy(trained, tmp_path)
    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("    - cya\n", "    - cya\n    - later alligator\n"))
    result = train(work / "domain.yml", work / "config.yml", [work / "data"], output=work / "models",
                   model_to_finetune=work / "models", finetuning_epoch_fraction=0.5)
    assert result.code == 2
    metadata = _metadata(str(result.model))
    assert metadata["mode"] == "finetune"
    assert metadata["finetuned_from"]["name"] == "first"
    assert metadata["parts"]["nlu"]["action"] == "finetune"
    assert metadata["parts"]["core"]["action"] == "keep"


def test_finetune_with_new_intent_grows_both_models(trained: tuple[Path, str], tmp_path: Path) -> None:
    """Issue 17: an added intent (data and domain) is finetuned; removed/renamed ones are refused
    (tests/training/test_evolve.py, test_core_model.py)."""
    work, _ = _copy(trained, tmp_path)
    nlu = work / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text() + "\n- intent: ask_time\n  examples: |\n    - what time is it\n    - time please\n")
    domain = work / "domain.yml"
    domain.write_text(domain.read_text().replace("  - inform\n", "  - inform\n  - ask_time\n"))
    result = train(work / "domain.yml", work / "config.yml", [work / "data"], output=work / "models",
                   model_to_finetune=work / "models")
    metadata = _metadata(str(result.model))
    assert metadata["parts"]["nlu"]["action"] == "finetune"


def test_cli_test_writes_every_report_and_parse_prints_json(
    trained: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work, model = _copy(trained, tmp_path)
    monkeypatch.chdir(work)
    assert main(["test", "--model", "models", "--out", "results"], environ={}) == 0
    for report in ("intent_report.json", "entity_report.json", "intent_errors.json", "intent_confusion_matrix.png",
                   "intent_histogram.png", "story_report.json", "failed_test_stories.yml", "stories_junit.xml"):
        assert (work / "results" / report).is_file(), report
    intent_report = json.loads((work / "results" / "intent_report.json").read_text())
    assert {"accuracy", "macro avg", "weighted avg", "micro avg", "greet"} <= set(intent_report)
    capsys.readouterr()
    assert main(["parse", "--model", model, "book a flight to Paris"], environ={}) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["text"] == "book a flight to Paris"
    assert {"intent", "intent_ranking", "entities"} <= set(parsed)


def test_cli_dry_run_exit_code_is_the_bitmask(trained: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work, _ = _copy(trained, tmp_path)
    monkeypatch.chdir(work)
    assert main(["train", "--dry-run"], environ={}) == 0
    stories = work / "data" / "stories.yml"
    stories.write_text(stories.read_text() + "\n- story: thanks\n  steps:\n  - intent: thankyou\n  - action: utter_you_are_welcome\n")
    assert main(["train", "--dry-run"], environ={}) == 1
    assert main(["train", "--dry-run", "--force"], environ={}) == 11


def test_cli_cross_validation_writes_fold_reports(trained: tuple[Path, str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    work, _ = _copy(trained, tmp_path)
    monkeypatch.chdir(work)
    capsys.readouterr()
    assert main(["test", "nlu", "--cross-validation", "--folds", "2", "--epochs", "1", "--out", "cv"], environ={}) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["folds"] == 2 and len(summary["per_fold"]) == 2
    for index, fold in enumerate(("fold_1", "fold_2")):
        report = json.loads((work / "cv" / fold / "intent_report.json").read_text())
        assert summary["per_fold"][index]["intent_f1"] == pytest.approx(report["weighted avg"]["f1-score"])
        assert sum(v["support"] for k, v in report.items() if isinstance(v, dict) and "avg" not in k) > 0
    folds_f1 = [fold["intent_f1"] for fold in summary["per_fold"]]
    assert summary["mean"]["intent_f1"] == pytest.approx(sum(folds_f1) / 2)
    assert json.loads((work / "cv" / "cross_validation.json").read_text()) == summary


def test_text_only_user_turn_is_trained_as_the_intent_the_fresh_nlu_model_gives_it(tmp_path: Path) -> None:
    """Rasa trains end-to-end stories; deltatrain labels the text with the NLU model trained in the same run."""
    work = tmp_path / "assistant"
    shutil.copytree(EXAMPLE, work)
    stories = work / "data" / "stories.yml"
    stories.write_text(
        stories.read_text()
        + "\n- story: greeted by text\n  steps:\n  - user: \"hello\"\n  - action: utter_greet\n"
    )
    result = train(work / "domain.yml", work / "config.yml", [work / "data"], output=work / "models",
                   fixed_model_name="e2e", nlu_additional_arguments=TINY, core_additional_arguments=TINY)
    warnings = _metadata(str(result.model))["parts"]["core"]["summary"]["warnings"]
    labelled = [w for w in warnings if "user turn 'hello' has no intent: trained as intent" in w]
    assert len(labelled) == 1 and "data/stories.yml:" in labelled[0]
